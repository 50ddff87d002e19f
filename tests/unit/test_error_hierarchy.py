"""One error root: every exception class mailcrm defines is a `MailcrmError`, so the CLI
and the daemon can rely on ``except MailcrmError`` meaning "an error mailcrm raised on
purpose, with a message for the user". The few exceptions that never leave their module
(control flow inside a third-party library's own hierarchy) are named here, with why."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import mailcrm
from mailcrm.errors import MailcrmError

# Skipped on import: alembic's env.py runs only inside an alembic migration context.
NOT_IMPORTABLE = {"mailcrm.__main__", "mailcrm.store.migrations.env"}

# Internal exceptions, each raised and caught inside its own module or shell.
INTERNAL = {
    # yaml's own error type, so PyYAML reports its line and column; turned into YamlValueError.
    "mailcrm.yamlfile._TooDeep",
    # Jinja2 sandbox limits, caught in render and turned into TemplateError.
    "mailcrm.render.errors._LimitError",
    # Rolls back a dry-run import transaction; caught by the importer.
    "mailcrm.store.importer._RollBack",
    # aiosmtplib's refusal carrying its phase; caught in SmtpConnection.send.
    "mailcrm.smtp.pool._PhasedRefusal",
    # aiosmtplib's "disconnected" with the replies read so far; caught in mailcrm.smtp.pool.
    "mailcrm.smtp.pipelining.PipelineBroken",
}


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(mailcrm.__path__, "mailcrm."):
        if module_info.name in NOT_IMPORTABLE:
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_exception_mailcrm_raises_is_a_mailcrm_error() -> None:
    classes = _exception_classes()
    outside = sorted(
        name for name, cls in classes.items() if not issubclass(cls, MailcrmError) and name not in INTERNAL
    )
    assert outside == [], f"exceptions outside MailcrmError (mailcrm/errors.py): {outside}"


def test_the_internal_exceptions_named_here_still_exist() -> None:
    """A stale entry would let a renamed class slip past the check above."""
    assert INTERNAL - set(_exception_classes()) == set()


def test_the_senders_errors_keep_their_messages() -> None:
    """Under the new root, `str(error)` is still the message the sender records."""
    from mailcrm.domain.retry import Phase, SmtpOutcome
    from mailcrm.send.limits import Stopped
    from mailcrm.smtp.errors import SendAborted, SmtpConfigError, SmtpError, SmtpSendError, Utf8NotOffered

    outcome = SmtpOutcome(Phase.RCPT, 550, "5.1.1 no such user", "smtp.example:587")
    assert str(SmtpSendError(outcome)) == outcome.describe()
    assert SmtpSendError(outcome).outcome is outcome
    assert str(SmtpConfigError(outcome)) == outcome.describe()
    utf8 = Utf8NotOffered("jörg@example.com", "smtp.example:587")
    assert utf8.address == "jörg@example.com" and "SMTPUTF8" in str(utf8)
    assert str(SendAborted("the outbox row is no longer held by this sender")).startswith("the outbox row")
    for error in (SmtpSendError, SmtpConfigError, Utf8NotOffered, SendAborted):
        assert issubclass(error, SmtpError)
    assert issubclass(Stopped, MailcrmError) and str(Stopped())
