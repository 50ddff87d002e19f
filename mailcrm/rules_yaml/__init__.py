"""Rule files (`rules/*.yaml`) → a validated `RuleSet`, with every problem pointing at its line.

A salesperson edits these files by hand, so the loader is strict and talkative: unknown
keys and names get a "did you mean", every problem of every file is reported at once,
secrets are refused wherever they appear, and a daemon keeps running on the last good
rule set while an edit is broken (`RuleWatcher`).

Files are read with the safe loader of `mailcrm.yamlfile` (no Python tags, no duplicate
keys, bounded aliases). The node tree is then walked once more to keep what the plain
data loses: where each *value* starts (errors point at `thank_yuo`, not at `template:`)
and the text as written (`send_time: 10:00` is the number 600 in YAML 1.1, and the key
`on:` is the boolean true).

The pieces, each importing only those above it:

- `tree`: the node tree with value positions and raw text
- `values`: `FieldReader`, the readers of single fields (text, duration, window, ...)
- `filters`, `triggers`: a rule's `where:` and `when:`, as readers built on `FieldReader`
- `parser`: one file, rule by rule
- `loader`: a folder of files and the checks across them; `RuleError`
- `watch`: `RuleWatcher`, reloading when the files change
"""

from mailcrm.rules_yaml.loader import RuleError, check_rules, load_rule_file, load_rules, rule_files
from mailcrm.rules_yaml.values import suggest
from mailcrm.rules_yaml.watch import RuleWatcher

__all__ = [
    "RuleError",
    "RuleWatcher",
    "check_rules",
    "load_rule_file",
    "load_rules",
    "rule_files",
    "suggest",
]
