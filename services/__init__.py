"""What the pages, the JSON API, the command line (and later the scheduler) share: each rule that changes
data, in one place. Services take plain values (dicts, model rows), never forms, and say who acts
(``actor``, a name for the audit log); they raise domain errors that each caller words in its own terms."""
