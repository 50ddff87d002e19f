"""IMAP for mailbox sync: the connection (`client`, assembled from `connection`, `login`,
`folders`, `fetching`, `changes`, `append` and `idle`), pure response parsing (`parse`)
and the errors the sync supervisor reacts to (`errors`).

Nothing is re-exported here, so importing the pure `mailcrm.imap.parse` does not load
aioimaplib.
"""
