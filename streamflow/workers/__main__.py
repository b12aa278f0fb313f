"""``python -m streamflow.workers``: one worker process (started by the supervisor; see `worker.main`)."""

from .worker import main

raise SystemExit(main())
