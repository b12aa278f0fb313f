"""Tools for developing with streamflow on one machine: `streamflow dev kafka`, `tap` and `produce`."""
