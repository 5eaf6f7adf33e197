"""Code libraries generate on first use is made before the seal: SQLAlchemy's ORM, sealed.

Each case runs in a child interpreter (a seal cannot be undone): a real SQLAlchemy ORM model
on sqlite, the seal's hook installed the way the runtime installs it, then the statements a
CRUD app makes after it: insert, get, refresh, update, delete, a join. Without the runtime's
preparation the first of them that makes a new kind of SQL element is refused (seal.code).
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

SRC = Path(__file__).resolve().parents[3] / "src"

CHILD = r"""
import json, os, sys
prepared = sys.argv[1] == "prepared"
from sqlalchemy import ForeignKey, String, create_engine, delete, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

class Base(DeclarativeBase):
    pass

class Shop(Base):
    __tablename__ = "shops"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))

class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"))

engine = create_engine("sqlite://")
Base.metadata.create_all(engine)

from summon.runtime import prepare, seal_hook
said = []
made = prepare.prepare(said.append) if prepared else 0
hook = seal_hook.make_hook(
    roots=(os.path.dirname(os.__file__),), writable=(), enforce=True,
    trusted_callers=frozenset(),
    report=lambda what, rule, enforce: said.append(f"{rule}: {what}"),
)
sys.addaudithook(hook)

results = {}
def step(name, fn):
    try:
        results[name] = fn()
    except Exception as e:
        results[name] = f"error: {type(e).__name__}"

with Session(engine) as s:
    def insert():
        shop = Shop(name="corner")
        s.add(shop)
        s.flush()
        s.add(Item(name="tea", shop_id=shop.id))
        s.commit()
        return "ok"
    step("insert", insert)
    step("get", lambda: s.get(Item, 1).name)
    def refresh():
        item = s.get(Item, 1)
        s.refresh(item)
        return item.name
    step("refresh", refresh)
    def change():
        s.execute(update(Item).where(Item.id == 1).values(name="coffee"))
        s.commit()
        return s.scalar(select(Item.name).where(Item.id == 1))
    step("update", change)
    step("join", lambda: s.execute(
        select(Shop.name, func.count(Item.id)).join(Item).group_by(Shop.name)).all()[0][1])
    def remove():
        s.execute(delete(Item).where(Item.id == 1))
        s.commit()
        return s.scalar(select(func.count()).select_from(Item))
    step("delete", remove)
print(json.dumps({"made": made, "results": results, "said": said}))
"""


def _child(mode: str) -> dict[str, Any]:
    site = sysconfig.get_paths()["purelib"]
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", CHILD, mode],
        env={"PYTHONPATH": f"{SRC}:{site}", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return doc


EXPECTED = {
    "insert": "ok",
    "get": "tea",
    "refresh": "tea",
    "update": "coffee",
    "join": 1,
    "delete": 0,
}


def test_a_sealed_orm_app_runs_its_statements_once_prepared() -> None:
    doc = _child("prepared")
    assert doc["results"] == EXPECTED
    assert doc["said"] == []
    assert doc["made"] > 100  # every SQL element class's dispatchers


def test_without_the_preparation_the_seal_refuses_what_sqlalchemy_generates() -> None:
    """What the preparation is for: the same statements, sealed unprepared."""
    doc = _child("bare")
    refused = [name for name, value in doc["results"].items() if value != EXPECTED[name]]
    assert refused, doc
    assert any(line.startswith("seal.code:") and "compile" in line for line in doc["said"])
