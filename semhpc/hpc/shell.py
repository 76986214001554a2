"""Turning values into bash words that can never run anything.

Every value that reaches a job script passes through `word` (plain shell quoting) or, for
profile paths and environment values, `word_with_vars`: there the only thing bash may expand is
a `${NAME}` reference, so a site can write `scratch: ${CINECA_SCRATCH}/sem` and the variable is
read on the compute node, while `$(...)`, backticks, `;` and quotes stay literal text.
"""

from __future__ import annotations

import re
import shlex

# The one expansion allowed in profile values: ${NAME}.
VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def word(value: object) -> str:
    """One bash word holding exactly `value` (quoted only when needed, for readability)."""
    return shlex.quote(str(value))


def words(values: list) -> str:
    return " ".join(word(v) for v in values)


def word_with_vars(text: str) -> str:
    """One bash word in which `${NAME}` references expand and everything else is literal.

    A leading `~/` means the home directory. Example: `${SCRATCH}/a b` -> `"${SCRATCH}"'/a b'`.
    """
    if text == "~" or text.startswith("~/"):
        text = "${HOME}" + text[1:]
    parts, pos = [], 0
    for ref in VAR_REF.finditer(text):
        if ref.start() > pos:
            parts.append(word(text[pos:ref.start()]))
        parts.append(f'"${{{ref.group(1)}}}"')
        pos = ref.end()
    if pos < len(text) or not parts:
        parts.append(word(text[pos:]))
    return "".join(parts)


def stray_dollar(text: str) -> bool:
    """True when `text` has a `$` that is not part of a `${NAME}` reference (a likely mistake)."""
    return "$" in VAR_REF.sub("", text)
