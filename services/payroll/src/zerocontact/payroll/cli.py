"""``zerocontact payroll``: submit a CSV batch and follow it with a progress bar."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from zerocontact.payroll.domain.batches import MalformedCsv, parse_csv

app = typer.Typer(help="Payroll batches.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV batch")],
    employer: Annotated[str, typer.Option(help="the employer's enterprise id")],
    token: Annotated[str, typer.Option(envvar="ZC_ACCESS_TOKEN", help="identity access token")],
    url: Annotated[str, typer.Option(envvar="ZC_PAYROLL_URL")] = "http://127.0.0.1:8003",
    follow: Annotated[bool, typer.Option("--follow", help="follow until completed")] = False,
    key: Annotated[str | None, typer.Option(help="Idempotency-Key (default: random)")] = None,
) -> None:
    """Submit FILE.csv (count and control sum computed from it) and optionally follow it."""
    text = file.read_text(encoding="utf-8")
    try:
        items = parse_csv(text)
    except MalformedCsv as exc:
        err.print(f"[red]malformed CSV:[/red] {exc}")
        raise typer.Exit(2) from None
    total = sum((Decimal(i.amount) for i in items if _is_amount(i.amount)), Decimal(0))
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key or uuid.uuid4().hex}
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.post(
            f"/v1/employers/{employer}/batches/csv",
            params={"item_count": len(items), "control_sum": str(total)},
            content=text.encode(),
            headers={**headers, "Content-Type": "text/csv"},
        )
        if r.status_code != 201:
            body = r.json()
            err.print(f"[red]refused ({r.status_code}):[/red] {body.get('detail')}")
            for problem in body.get("items", [])[:20]:
                err.print(f"  item {problem['seq']}: {problem['field']} {problem['code']}")
            raise typer.Exit(1)
        batch = r.json()
        typer.echo(f"batch {batch['batch_id']} {batch['state']} ({batch['item_count']} items)")
        if not follow:
            return
        with Progress(
            TextColumn("paying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        ) as progress:
            task = progress.add_task("pay", total=batch["item_count"])
            while True:
                view = client.get(
                    f"/v1/batches/{batch['batch_id']}",
                    headers={"Authorization": headers["Authorization"]},
                ).json()
                counts = view["counts"]
                progress.update(task, completed=counts.get("PAID", 0) + counts.get("FAILED", 0))
                if view["state"] in ("COMPLETED", "REFUSED"):
                    break
                time.sleep(0.5)
        typer.echo(f"{view['state']} {view['status']}: {counts}")


def _is_amount(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True
