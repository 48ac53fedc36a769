"""IMAP mailboxes as a way in beside SMTP and ``mailgate ingest``.

``runner.ImapRunner`` runs one ``reader.MailboxReader`` thread per enabled
mailbox (in ``mailgate serve`` and in ``mailgate imap``). A reader logs in
(``connection``), takes the new mail of each folder (``folder``), spools it
with its record in one transaction (``spooling``) and only then flags,
moves or deletes it on the server; ``plan`` contains the decisions that need
no server, ``alerts`` the mail to admins about a failing mailbox.
"""
