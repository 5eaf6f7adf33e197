"""Reads the image's /etc/summon/app.json into an AppConfig, without the json module.

`import json` pulls in re, enum and functools: about 8 ms at every start of every image,
as much again as the interpreter itself takes to start. app.json is small and written by
summon build, so a short recursive-descent reader of the JSON grammar (RFC 8259) does instead.
It accepts exactly what json.loads accepts, less NaN and Infinity.
"""

from __future__ import annotations

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_WHITESPACE = " \t\n\r"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_MAX_DEPTH = 64
SEAL_MODES = ("on", "audit", "off")
APP_JSON = "/etc/summon/app.json"  # where an image holds its app config


class Fail(Exception):
    """A problem the runtime reports as one line "summon: ...", then exits with `status`."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def host_path(root: str, image_path: str) -> str:
    """The path on this host of `image_path` (absolute, in the image) when / is `root`."""
    if root == "/":
        return image_path
    return root.rstrip("/") + "/" + image_path.lstrip("/")


class ConfigError(Exception):
    """app.json is missing, unreadable, or not shaped as docs/image-format.md says."""


class AppConfig:
    """The app config of an image. Paths are image paths (absolute, '/'-separated)."""

    def __init__(
        self,
        *,
        name: str,
        entry_kind: str,
        entry_module: str = "",
        entry_function: str = "",
        entry_path: str = "",
        entry_package: str = "",
        path: list[str] | None = None,
        data: dict[str, str] | None = None,
        network: str = "socket",
        ports: list[str] | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        volumes: list[str] | None = None,
        stores: dict[str, str] | None = None,
        probe: str = "",
        seal: str = "off",
        preload: list[str] | None = None,
        seal_imports: list[str] | None = None,
        seal_at: str = "auto",
        warm_up: list[str] | None = None,
        secrets: list[str] | None = None,
        tls: dict[str, object] | None = None,
        seal_code: list[tuple[str, str]] | None = None,
        manifest: str = "the manifest",
        entry_call: tuple[list[object], dict[str, object]] | None = None,
    ) -> None:
        self.name = name
        self.manifest = manifest  # where its keys were written: "[tool.summon]", "summon.toml"
        self.entry_kind = entry_kind  # "function" | "script" | "wsgi" | "asgi"
        self.entry_module = entry_module  # for all but "script"
        self.entry_function = entry_function  # the function, or the app's attribute name
        self.entry_path = entry_path  # for "script"
        self.entry_package = entry_package  # a script's package: run as `python -m` would
        # An app factory's literal (args, kwargs): "module:create_app()" in the manifest.
        self.entry_call = entry_call
        self.path = path or []
        self.data = data or {}
        self.network = network
        self.ports = ports or []
        self.env = env or {}
        self.args = args or []
        self.volumes = volumes or []  # image paths the app may write under (with /tmp)
        self.stores = stores or {}  # KV_RW parameter name -> its folder, inside a volume
        self.probe = probe  # "module:function" the runtime calls to warm up before the seal
        self.seal = seal  # "on" | "audit" | "off" (docs/sealing.md)
        self.preload = preload or []  # shared objects loaded before the seal (image paths)
        self.seal_imports = seal_imports or []  # a script's top-level imports, made before it
        self.seal_at = seal_at  # "ready": only the app's ready() closes the seal; else "auto"
        self.warm_up = warm_up or []  # paths a served app is asked for (GET) before the seal
        # (SHA-256, file name) of what the build's recording run compiled after the seal
        # (sha256 "" for a name whose code ran but was compiled before it): let through.
        self.seal_code = seal_code or []
        self.secrets = secrets or []  # names a run must give
        self.tls = tls  # {"backend", "ports", "cert", "key", "client_auth", "client_ca", "alpn"}

    @property
    def entry(self) -> str:
        """The entry as the manifest spells it: "module:function", or the script's path."""
        if self.entry_kind != "script":
            call = ""
            if self.entry_call is not None:
                call = "(...)" if self.entry_call[0] or self.entry_call[1] else "()"
            return f"{self.entry_module}:{self.entry_function}{call}"
        return self.entry_path


def load(file: str) -> AppConfig:
    """Read and check the app config in `file` (a host path)."""
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {file}: {e.strerror}") from None
    try:
        doc = parse_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{file} is not valid JSON: {e}") from None
    return from_dict(doc, file)


def from_dict(doc: object, file: str = "app.json") -> AppConfig:
    """Check the shape of a parsed app.json; keys the runtime does not use are ignored."""

    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"{file}: {key!r} must be {what}")

    if not isinstance(doc, dict):
        raise ConfigError(f"{file}: must hold a JSON object")
    entry = doc.get("entry")
    if not isinstance(entry, dict):
        raise bad("entry", 'an object with a "kind"')
    kind = entry.get("kind")
    module, function, script = entry.get("module"), entry.get("function"), entry.get("path")
    entry_call: tuple[list[object], dict[str, object]] | None = None
    package: object = ""
    if kind == "function":
        if not (isinstance(module, str) and module and isinstance(function, str) and function):
            raise bad("entry", '{"kind": "function", "module": M, "function": F}')
        script = ""
    elif kind == "wsgi" or kind == "asgi":
        function = entry.get("attr")  # an app object, not necessarily a function
        if not (isinstance(module, str) and module and isinstance(function, str) and function):
            raise bad("entry", f'{{"kind": "{kind}", "module": M, "attr": A}}')
        script = ""
        call = entry.get("call")
        if call is not None:
            args = call.get("args") if isinstance(call, dict) else None
            kwargs = call.get("kwargs") if isinstance(call, dict) else None
            if not (isinstance(args, list) and isinstance(kwargs, dict)):
                raise bad("entry", 'a "call" of {"args": [...], "kwargs": {...}}')
            entry_call = (args, kwargs)
    elif kind == "script":
        if not (isinstance(script, str) and script.startswith("/")):
            raise bad("entry", '{"kind": "script", "path": an absolute image path}')
        package = entry.get("package", "")
        if not isinstance(package, str) or (
            package and not all(p.isidentifier() for p in package.split("."))
        ):
            raise bad("entry", 'a script\'s "package" a dotted package name')
        module = function = ""
    else:
        raise bad("entry", 'of kind "function", "script", "wsgi" or "asgi"')
    name = doc.get("name", "app")
    if not isinstance(name, str):
        raise bad("name", "a string")
    network = doc.get("network", "socket")
    if not isinstance(network, str):
        raise bad("network", "a string")
    probe = doc.get("probe", "")
    if not isinstance(probe, str):
        raise bad("probe", '"module:function"')
    # Absent in images built before sealing: their runtime never sealed, nor does this one.
    seal = doc.get("seal", {"mode": "off"})
    if not isinstance(seal, dict) or seal.get("mode") not in SEAL_MODES:
        raise bad("seal", f'an object with a "mode" of {", ".join(SEAL_MODES)}')
    return AppConfig(
        name=name,
        entry_kind=kind,
        entry_module=module,
        entry_function=function,
        entry_path=script,
        entry_package=package if isinstance(package, str) else "",
        entry_call=entry_call,
        path=_str_list(doc, "path", bad),
        data=_str_dict(doc, "data", bad),
        network=network,
        ports=_str_list(doc, "ports", bad),
        env=_str_dict(doc, "env", bad),
        args=_str_list(doc, "args", bad),
        volumes=_str_list(doc, "volumes", bad),
        stores=_str_dict(doc, "stores", bad),
        probe=probe,
        seal=seal["mode"],
        preload=_str_list(seal, "preload", bad),
        seal_imports=_str_list(seal, "imports", bad),
        seal_at="ready" if seal.get("at") == "ready" else "auto",
        warm_up=_str_list(seal, "warm_up", bad),
        secrets=_str_list(doc, "secrets", bad),
        tls=_tls(doc, bad),
        seal_code=_seal_code(seal, bad),
        manifest=manifest_table(doc),
    )


def manifest_table(doc: object) -> str:
    """Where the app's manifest keys were written, as an app.json records it: "summon.toml",
    "[tool.summon]"...; "the manifest" for an image built before it did."""
    value = doc.get("manifest") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and value else "the manifest"


def _seal_code(
    seal: dict[str, object], bad: Callable[[str, str], Exception]
) -> list[tuple[str, str]]:
    """app.json "seal"/"code": [[sha256 hex or "", file name], ...]."""
    value = seal.get("code", [])
    hexdigits = "0123456789abcdef"
    out: list[tuple[str, str]] = []
    if isinstance(value, list):
        for item in value:
            if not (isinstance(item, list) and len(item) == 2):
                break
            digest, name = item
            if not (isinstance(digest, str) and isinstance(name, str)):
                break
            if digest and (len(digest) != 64 or digest.strip(hexdigits)):
                break
            out.append((digest, name))
        else:
            return out
    raise bad("seal.code", 'a list of ["sha256 in hex", "file name"] pairs')


def _tls(doc: dict[str, object], bad: Callable[[str, str], Exception]) -> dict[str, object] | None:
    value = doc.get("tls")
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("backend"), str):
        raise bad("tls", 'an object with a "backend"')
    ports = value.get("ports", [])
    if not isinstance(ports, list) or not all(type(p) is int for p in ports):
        raise bad("tls", 'an object whose "ports" is a list of numbers')
    return value


def _str_list(doc: dict[str, object], key: str, bad: Callable[[str, str], Exception]) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(key, "a list of strings")
    return value


def _str_dict(
    doc: dict[str, object], key: str, bad: Callable[[str, str], Exception]
) -> dict[str, str]:
    value = doc.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad(key, "an object of strings")
    return value


# JSON, from RFC 8259:
#   value  = object / array / number / string / "true" / "false" / "null"
#   object = "{" [ string ":" value *( "," string ":" value ) ] "}"
#   array  = "[" [ value *( "," value ) ] "]"
#   number = [ "-" ] int [ frac ] [ exp ]
#   int    = "0" / %x31-39 *DIGIT
#   frac   = "." 1*DIGIT
#   exp    = ( "e" / "E" ) [ "-" / "+" ] 1*DIGIT
#   string = '"' *( unescaped / "\" escape ) '"'
#   escape = '"' / "\" / "/" / "b" / "f" / "n" / "r" / "t" / "u" 4HEXDIG
#   unescaped = %x20-21 / %x23-5B / %x5D-10FFFF
# with whitespace (space, tab, LF, CR) allowed around every value and punctuation mark.


def parse_json(text: str) -> object:
    """Parse one JSON document; raise ValueError naming the offset of the first fault."""
    value, i = _value(text, _skip(text, 0), 0)
    i = _skip(text, i)
    if i != len(text):
        raise ValueError(f"extra data at offset {i}")
    return value


def _skip(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WHITESPACE:
        i += 1
    return i


def _value(s: str, i: int, depth: int) -> tuple[object, int]:
    if i >= len(s):
        raise ValueError(f"expected a value at offset {i}, found the end")
    c = s[i]
    if c == '"':
        return _string(s, i + 1)
    if c == "{" or c == "[":
        if depth >= _MAX_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_DEPTH} at offset {i}")
        return _object(s, i + 1, depth + 1) if c == "{" else _array(s, i + 1, depth + 1)
    if c == "-" or c in _DIGITS:
        return _number(s, i)
    for word, value in (("true", True), ("false", False), ("null", None)):
        if s.startswith(word, i):
            return value, i + len(word)
    raise ValueError(f"expected a value at offset {i}, found {c!r}")


def _object(s: str, i: int, depth: int) -> tuple[dict[str, object], int]:
    result: dict[str, object] = {}
    i = _skip(s, i)
    if s.startswith("}", i):
        return result, i + 1
    while True:
        if not s.startswith('"', i):
            raise ValueError(f"expected a string key at offset {i}")
        key, i = _string(s, i + 1)
        i = _skip(s, i)
        if not s.startswith(":", i):
            raise ValueError(f"expected ':' at offset {i}")
        result[key], i = _value(s, _skip(s, i + 1), depth)
        i = _skip(s, i)
        if s.startswith(",", i):
            i = _skip(s, i + 1)
        elif s.startswith("}", i):
            return result, i + 1
        else:
            raise ValueError(f"expected ',' or '}}' at offset {i}")


def _array(s: str, i: int, depth: int) -> tuple[list[object], int]:
    result: list[object] = []
    i = _skip(s, i)
    if s.startswith("]", i):
        return result, i + 1
    while True:
        item, i = _value(s, i, depth)
        result.append(item)
        i = _skip(s, i)
        if s.startswith(",", i):
            i = _skip(s, i + 1)
        elif s.startswith("]", i):
            return result, i + 1
        else:
            raise ValueError(f"expected ',' or ']' at offset {i}")


def _digits(s: str, i: int) -> int:
    start = i
    while i < len(s) and s[i] in _DIGITS:
        i += 1
    if i == start:
        raise ValueError(f"expected a digit at offset {i}")
    return i


def _number(s: str, i: int) -> tuple[int | float, int]:
    start = i
    if s[i] == "-":
        i += 1
    if s.startswith("0", i):
        i += 1
    else:
        i = _digits(s, i)
    fractional = False
    if s.startswith(".", i):
        i = _digits(s, i + 1)
        fractional = True
    if i < len(s) and s[i] in "eE":
        i += 1
        if i < len(s) and s[i] in "+-":
            i += 1
        i = _digits(s, i)
        fractional = True
    text = s[start:i]
    return (float(text) if fractional else int(text)), i


def _string(s: str, i: int) -> tuple[str, int]:
    """Parse a string whose opening quote is just before `i`."""
    parts: list[str] = []
    n = len(s)
    start = i
    while True:
        if i >= n:
            raise ValueError(f"unterminated string starting at offset {start - 1}")
        c = s[i]
        if c == '"':
            parts.append(s[start:i])
            return "".join(parts), i + 1
        if c == "\\":
            parts.append(s[start:i])
            code = s[i + 1 : i + 2]
            if code == "u":
                point = _hex4(s, i + 2)
                i += 6
                # A high surrogate followed by an escaped low one is one character;
                # alone, each stays a lone surrogate, as json.loads leaves it.
                if 0xD800 <= point <= 0xDBFF and s.startswith("\\u", i):
                    low = _hex4(s, i + 2)
                    if 0xDC00 <= low <= 0xDFFF:
                        point = 0x10000 + ((point - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                parts.append(chr(point))
            elif code in _ESCAPES:
                parts.append(_ESCAPES[code])
                i += 2
            else:
                raise ValueError(f"invalid escape at offset {i}")
            start = i
            continue
        if c < " ":
            raise ValueError(f"control character in string at offset {i}")
        i += 1


def _hex4(s: str, i: int) -> int:
    digits = s[i : i + 4]
    # int(x, 16) alone would also take signs, spaces and underscores.
    if len(digits) != 4 or not all(d in _HEX for d in digits):
        raise ValueError(f"invalid \\u escape at offset {i - 2}")
    return int(digits, 16)
