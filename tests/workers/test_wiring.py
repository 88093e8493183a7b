"""Every kind of background work the services write has a worker that does it."""

from __future__ import annotations

import ast
from pathlib import Path

from services import orders, pdf
from services.events import KeptEvents
from settings import Settings
from workers.options import worker_options
from workers.tasks import handlers

ROOT = Path(__file__).resolve().parents[2]


def _task_names_written() -> set[str]:
    """The first argument of every outbox.add(...) call under services/, resolved to its string."""
    names: set[str] = set()
    for path in (ROOT / "services").glob("*.py"):
        tree = ast.parse(path.read_text())
        constants = {
            t.id: n.value.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            is_add = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "outbox"
            )
            if is_add and isinstance(node, ast.Call) and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant):
                    names.add(str(first.value))
                elif isinstance(first, ast.Name):
                    names.add(constants.get(first.id) or _imported(first.id))
    return names


def _imported(name: str) -> str:
    import services.mail

    return str(getattr(services.mail, name, getattr(pdf, name, name)))


def test_every_outbox_task_has_a_handler(settings: Settings) -> None:
    written = _task_names_written()
    assert {"send_email", "render_pdf", "render_pdf_chunk", "assemble_pdf"} <= written
    assert written <= set(handlers(settings, bus=KeptEvents()))


def test_the_order_service_names_the_pdf_job_the_pdf_service_handles() -> None:
    assert orders.RENDER_PDF == pdf.RENDER_PDF


def test_cron_jobs_are_scheduled(settings: Settings) -> None:
    names = {job.name for job in worker_options(settings, embedded=True)["cron_jobs"]}
    assert {"cron:expire_vouchers", "cron:remind_expiring_orders", "cron:purge_idempotency_keys"} <= names
