"""The one exception type for bad user input.

A ``PeftlabError`` means "the user gave us something wrong": the CLI prints its message on one line and exits
with code 2. Programming errors stay ordinary exceptions with tracebacks.
"""


class PeftlabError(Exception):
    """Bad input: the message names the file, key or value and what is allowed."""
