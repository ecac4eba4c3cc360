"""Markdown rendering of the report document (GitHub-flavoured tables; plots as PNG links)."""
from __future__ import annotations


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: list, plot_files: dict[str, str]) -> str:
    out: list[str] = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
                     "|" + "|".join("---" for _ in headers) + "|"]
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({plot_files[block[1]]})")
        elif kind == "pre":
            out.append("```\n" + block[1] + "\n```")
        else:
            raise ValueError(f"unknown document block {kind!r}")
    return "\n\n".join(out) + "\n"
