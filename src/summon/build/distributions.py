"""Which distribution (what `requirements` names) provides an import name, for hints.

`import yaml` comes from PyYAML, `import jinja2` from Jinja2: the import name and the name to
put in requirements differ often enough that a hint must say which. The answer comes from the
vendored distributions' own metadata, then from distributions installed on this host (for
summon's Python and the Debian interpreter), then from a short table of well-known ones.

The image carries the answers for the modules its code names but does not hold, in
/etc/summon/modules.tsv, which the runtime reads only when it prints a hint. That table uses
the vendored metadata and the table below only, never the host's packages: an image's bytes
must not depend on what the building host has installed.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from collections.abc import Iterable, Mapping, Sequence

from summon.build.vendor import Package

MODULES_TSV = "/etc/summon/modules.tsv"

STATE_MISSING = "missing"  # shipped code imports it; nothing provides it in the image
STATE_EXCLUDED = "excluded"  # the manifest's exclude list leaves it out
STATE_VENDORED = "vendored"  # a vendored distribution provides it

# Import names whose distribution is named otherwise, among the most used on PyPI.
WELL_KNOWN: dict[str, str] = {
    "yaml": "PyYAML",
    "PIL": "Pillow",
    "cv2": "opencv-python",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "jwt": "PyJWT",
    "jinja2": "Jinja2",
    "markupsafe": "MarkupSafe",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyOpenSSL",
    "serial": "pyserial",
    "socks": "PySocks",
    "attr": "attrs",
    "multipart": "python-multipart",
    "google.protobuf": "protobuf",
    "magic": "python-magic",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "zmq": "pyzmq",
    "git": "GitPython",
    "docx": "python-docx",
    "ldap": "python-ldap",
    "Levenshtein": "python-Levenshtein",
    "flask_sqlalchemy": "Flask-SQLAlchemy",
    "sqlalchemy": "SQLAlchemy",
    "werkzeug": "Werkzeug",
    "itsdangerous": "itsdangerous",
    "multidict": "multidict",
    "websockets": "websockets",
    "uvloop": "uvloop",
    "httptools": "httptools",
    "orjson": "orjson",
    "ujson": "ujson",
}

# Where Debian's interpreter finds packages installed with apt (python3-jinja2...).
_DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def distribution_of(
    module: str, vendored: Sequence[Package] = (), *, host: bool = True
) -> str | None:
    """The distribution providing `module` (or its top-level package), if known.

    host also asks the distributions installed on this host (~0.2 s the first time); the
    image's own table does without, so that what goes into an image does not depend on
    what this host happens to have installed.
    """
    top = module.partition(".")[0]
    for pkg in vendored:
        if top in pkg.top_level:
            return pkg.name
    installed = _host_distributions() if host else {}
    for name in (module, top):
        if name in WELL_KNOWN:
            return WELL_KNOWN[name]
        if name in installed:
            return installed[name]
    return None


def requirement_hint(
    module: str, vendored: Sequence[Package] = (), table: str = "the manifest"
) -> str:
    """The end of a hint for a module that is not there: what to add to requirements."""
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names:
        return "it is part of the stdlib but missing from the image's interpreter here"
    dist = distribution_of(module, vendored)
    if dist:
        return f"it comes from the distribution {dist}: add it to requirements in {table}"
    return f"add the distribution that provides it to requirements in {table}"


@functools.cache
def _host_distributions() -> dict[str, str]:
    """Top-level import name -> distribution, for what is installed on this host."""
    out: dict[str, str] = {}
    try:
        for top, dists in importlib.metadata.packages_distributions().items():
            if dists:
                out.setdefault(top, dists[0])
        for dist in importlib.metadata.distributions(path=[_DEBIAN_DIST_PACKAGES]):
            name = dist.metadata["Name"]
            for top in _top_level(dist):
                out.setdefault(top, name)
    except Exception:  # a broken .dist-info on the host must not break a build
        pass
    return out


def _top_level(dist: importlib.metadata.Distribution) -> Iterable[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return [t.strip() for t in text.splitlines() if t.strip()]
    names = set()
    for f in dist.files or ():
        first = f.parts[0] if f.parts else ""
        if first.isidentifier():
            names.add(first)
        elif f.suffix == ".py" and len(f.parts) == 1:
            names.add(f.stem)
    return names


def modules_table(
    missing: Iterable[str],
    excluded: Mapping[str, str],
    vendored: Sequence[Package],
) -> bytes:
    """The bytes of /etc/summon/modules.tsv: `module TAB state TAB detail` per line.

    state is one of STATE_*; detail is the distribution (missing, vendored) or the exclude
    entry (excluded). Missing modules appear only when their distribution is known.
    """
    rows: dict[str, tuple[str, str]] = {}
    for pkg in vendored:
        for top in pkg.top_level:
            rows[top] = (STATE_VENDORED, pkg.name)
    for name in sorted(set(missing)):
        top = name.partition(".")[0]
        if top in rows or top in sys.stdlib_module_names:
            continue
        dist = distribution_of(top, vendored, host=False)
        if dist:
            rows[top] = (STATE_MISSING, dist)
    for name, entry in excluded.items():
        rows[name] = (STATE_EXCLUDED, entry)
    lines = [f"{name}\t{state}\t{detail}\n" for name, (state, detail) in sorted(rows.items())]
    return "".join(lines).encode()
