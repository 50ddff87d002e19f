"""Sending the outbox. A batch reads top to bottom in `worker.Sender.send_due` (claim,
lanes, give back) and a row's path in `pipeline.RowPath.send` (check, compose, deliver,
record); each step is one module: `checks` (send-time facts), `compose`, `limits` (daily
cap, rate), `outcomes` (how an unsent row is recorded), `recorder` (the group commit),
`sentcopy` (copies in Sent), with typed results in `results` (`Outcome`, `SendStats`).

A sender runs with a `config.SenderConfig` (the sending policy, the salespeople, the
planning grace, the defaults), never the whole configuration: `sharing` (what each
sender process runs with) and `processes` (child sender processes, started from the
configuration file) are the only modules here that read it.
May import domain, render, smtp, store, settings (its parts) and imap (Sent copies);
SMTP itself is `mailcrm.smtp`'s, and this package is its only user."""
