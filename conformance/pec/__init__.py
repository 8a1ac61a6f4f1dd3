"""Sans-I/O PEC core: message kinds, daticert, MIME, S/MIME, test PKI, providers index."""
