"""Code the stdlib makes from text of its own, let through after the seal (seal_hook.py).

- collections.namedtuple evals one fixed template over its field names (identifiers it has
  checked): `lambda _cls, a, b: _tuple_new(_cls, (a, b))` in a namespace with no builtins.
  Modules that make one at import (tokenize, decimal, concurrent.futures, Pillow's format
  plugins) are imported after the seal too.
- gettext.c2py execs one fixed function over a catalog's plural-forms expression, which it
  has tokenized and parsed into Python of `n`, numbers, operators, parentheses and
  and/or/not/if/else. A catalog is loaded at its language's first use, after the seal
  (Django's for a request's Accept-Language, every .mo file having a Plural-Forms header).
  The expression is read from c2py's own local (`result`, the text it formats in), and must
  hold nothing else: nothing in it can call, name or reach anything but `n`.

Each check is known by its caller's code (its file in the image's stdlib and its name) and
the text; every name it uses is bound here, so patching a module changes nothing it decides
(the hook's cells check covers these closures too).

Image-side: stdlib only.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["stdlib_templates"]


def stdlib_templates(stdlib: str) -> tuple[Callable[[Any, Any], bool], Callable[[Any], bool]]:
    """(namedtuple(caller, source), plural_form(caller)) for the stdlib folder `stdlib`:
    whether that caller compiles its own template over checked text."""
    _str, _bytes, _type, _issubclass, _len = str, bytes, type, issubclass, len
    _value_error, _getframe = ValueError, sys._getframe
    _isidentifier = str.isidentifier
    _collections_file = f"{stdlib}/collections/__init__.py"
    _tuple_head, _tuple_mid, _tuple_tail = "lambda _cls, ", ": _tuple_new(_cls, (", "))"
    _gettext_file = f"{stdlib}/gettext.py"
    _plural_chars = "abcdefghijklmnopqrstuvwxyz0123456789 ()<>=!+-*/%"
    _plural_words = ("n", "if", "else", "and", "or", "not")
    _digits = "0123456789"

    def namedtuple(caller: Any, source: Any) -> bool:
        """Whether namedtuple compiles its own template, over nothing but identifiers."""
        if caller is None or caller.co_name != "namedtuple":
            return False
        if caller.co_filename != _collections_file:
            return False
        if _issubclass(_type(source), _bytes):
            text = b"".join((source,)).decode("utf-8", "replace")
        elif _issubclass(_type(source), _str):
            text = "".join((source,))
        else:
            return False
        if not text.startswith(_tuple_head):
            return False
        args, mid, tail = text[_len(_tuple_head) :].partition(_tuple_mid)
        if not mid or tail != args + _tuple_tail:
            return False
        names = args[:-1] if args.endswith(",") else args
        if not names:
            return not args  # no fields: "lambda _cls, : _tuple_new(_cls, ())"
        for word in names.split(", "):
            if not _isidentifier(word):
                return False
        return True

    def plural_form(caller: Any) -> bool:
        """Whether gettext's c2py execs its function over a plural-forms expression of
        nothing but n, numbers, operators and and/or/not/if/else (its local `result`)."""
        if caller is None or caller.co_name != "c2py" or caller.co_filename != _gettext_file:
            return False
        try:
            frame: Any = _getframe(3)  # 0 this, 1 _decide, 2 the hook, 3 c2py
        except _value_error:
            return False
        if frame.f_code is not caller:
            return False
        expr: Any = frame.f_locals.get("result")
        if _type(expr) is not _str or _len(expr) > 4000:
            return False
        for char in expr:
            if char not in _plural_chars:
                return False
        word = ""
        for char in expr + " ":
            if char in _plural_chars[:36]:
                word += char
                continue
            if word and word not in _plural_words and word.strip(_digits):
                return False
            word = ""
        return True

    return namedtuple, plural_form
