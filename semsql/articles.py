"""Articles as queries, from Python: reading one, explaining what a search makes of it, and the
optional summarisation model that replaces the extractive step.

The extraction itself lives in SQL (sql/046_articles.sql), so that psql, the CLI and the ORM
read an article alike; this module holds what only a client can do.

    rows = explain(conn, article=open("story.txt").read())
    summary = summarise(text, "sshleifer/distilbart-cnn-6-6")  # when one is configured
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import class_row

from .search import Notices

SUMMARY_MODEL_ENV = "SEMSQL_ARTICLE_SUMMARY_MODEL"
"""A Hugging Face id or local folder of a summarisation (seq2seq) model; unset: extractive."""

MAX_ARTICLE_BYTES = 160_000
"""Four bytes a character of semsql.max_article_length(): more is refused unread."""


class ArticleError(Exception):
    """An article that cannot be read, or a summarisation model that cannot run."""


@dataclass(frozen=True)
class ExplainRow:
    kind: str
    item: str | None
    weight: float | None
    detail: str | None


def read_article(source: str) -> str:
    """The text of an article file, or of stdin for '-'."""
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_ARTICLE_BYTES + 1)
        else:
            with Path(source).open("rb") as file:
                data = file.read(MAX_ARTICLE_BYTES + 1)
    except OSError as error:
        raise ArticleError(f"cannot read {source}: {error.strerror or error}") from None
    if len(data) > MAX_ARTICLE_BYTES:
        raise ArticleError(f"{source} is longer than {MAX_ARTICLE_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ArticleError(f"{source} is not UTF-8 text: {error.reason}") from None
    if not text.strip():
        raise ArticleError(f"{source} is empty")
    return text.replace("\x00", "")


def explain(
    conn: psycopg.Connection,
    *,
    query: str | None = None,
    article: str | None = None,
    article_summary: str | None = None,
    exclude: str | None = None,
    names: str = "filter",
    people: list[str] | None = None,
) -> tuple[list[ExplainRow], list[str]]:
    """semsql.explain_query's rows, and the server's notices about them."""
    notices = Notices()
    conn.add_notice_handler(notices)
    try:
        rows = (
            conn.cursor(row_factory=class_row(ExplainRow))
            .execute(
                """SELECT * FROM semsql.explain_query(
                       query => %s, article => %s, article_summary => %s, exclude => %s,
                       names => %s, people => %s::text[])""",
                [query, article, article_summary, exclude, names, people or None],
            )
            .fetchall()
        )
    finally:
        conn.remove_notice_handler(notices)
    return rows, notices.messages


def summarise(article: str, model: str, device: str = "cpu", max_new_tokens: int = 80) -> str:
    """A summary of the article by a seq2seq model (Hugging Face id or folder), loaded from the
    local cache or folder only: these machines reach no hub."""
    try:
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    except ImportError as error:
        raise ArticleError(f"summarising needs transformers and torch: {error}") from None
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(model, local_files_only=True)
        network: Any = AutoModelForSeq2SeqLM.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArticleError(
            f"cannot load the summarisation model {model}: {first} (hint: give a local folder, "
            f"or unset {SUMMARY_MODEL_ENV} for the extractive default)"
        ) from None
    network.to(device).eval()
    inputs = tokenizer(article, truncation=True, max_length=512, return_tensors="pt").to(device)
    inputs.pop("token_type_ids", None)  # BERT-style tokenizers give them; seq2seq models refuse
    with torch.inference_mode():
        output = network.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=1)
    summary: str = tokenizer.decode(output[0], skip_special_tokens=True).strip()
    return summary
