"""Flask with SQLAlchemy's ORM on sqlite (a file under /tmp): what a CRUD app does per request.

The echo route stores the body through the ORM, then reads it back the ways apps do:
session.get, refresh, an UPDATE statement, a join with a count, a DELETE. Each first use of a
kind of SQL element makes SQLAlchemy generate code for its class, after the seal in a sealed
image unless the runtime made it before (summon/runtime/prepare.py).
"""

import json
import os
import tempfile
import threading

from flask import Flask, request
from sqlalchemy import ForeignKey, String, create_engine, delete, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(400))
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))


engine = create_engine(f"sqlite:///{os.path.join(tempfile.gettempdir(), 'orm.sqlite3')}")
Base.metadata.create_all(engine)
_lock = threading.Lock()
app = Flask(__name__)


@app.get("/")
def index():
    with Session(engine) as s:
        count = s.scalar(select(func.count()).select_from(Note))
    return f"hello from flask_sqlalchemy: {count} notes\n"


@app.post("/echo")
def echo():
    data = request.get_json()
    with _lock, Session(engine) as s:
        author = Author(name="corpus")
        s.add(author)
        s.flush()
        note = Note(body=json.dumps(data), author_id=author.id)
        s.add(note)
        s.commit()
        got = s.get(Note, note.id)
        s.refresh(got)
        s.execute(update(Note).where(Note.id == got.id).values(body=got.body))
        s.commit()
        joined = s.execute(
            select(Author.name, func.count(Note.id)).join(Note).where(Author.id == author.id)
            .group_by(Author.name)
        ).one()
        body = s.scalar(select(Note.body).where(Note.id == got.id))
        s.execute(delete(Note).where(Note.id == got.id))
        s.execute(delete(Author).where(Author.id == author.id))
        s.commit()
    return {"echo": json.loads(body), "joined": list(joined)}


@app.get("/error")
def error():
    raise RuntimeError("the error route fails on purpose")
