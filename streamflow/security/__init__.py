"""Security building blocks shared by the servers and clients: TLS contexts, signatures, URL redaction."""
