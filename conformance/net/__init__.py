"""Network and mailbox I/O: SMTP, IMAP, POP3 and Maildir, with TLS. No PEC semantics live here.

Every blocking operation has a timeout and every wait has a deadline; secrets (passwords) are
never logged nor placed in exception messages.
"""
