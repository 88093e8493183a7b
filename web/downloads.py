"""The signed, short-lived download URLs minted by the API: an order's codes as CSV, its vouchers PDF."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from models import PdfStatus
from schema.context import AppResources
from services import downloads, exports, pdf_store


def not_found() -> Response:
    # One answer for every refusal (the status and body of an unknown path): tokens and ids cannot be probed.
    return PlainTextResponse("Not Found", status_code=404, headers={"Cache-Control": "no-store"})


async def download_codes_csv(request: Request) -> Response:
    """All codes of an order as CSV, streamed, for a signed URL minted by the API."""
    resources: AppResources = request.app.state.resources
    grant = downloads.verify(
        secret=resources.settings.secret_key,
        token=request.query_params.get("t", ""),
        order_id=request.path_params["order_id"],
        kind="csv",
    )
    order = await downloads.authorize(grant) if grant else None
    if grant is None or order is None:
        return not_found()
    headers = {
        "Content-Disposition": f'attachment; filename="{order.number}.csv"',
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    media_type = "text/csv; charset=utf-8"
    if request.method == "HEAD":  # Starlette routes HEAD here too: no codes leave, so nothing is recorded
        return Response(media_type=media_type, headers=headers)
    await exports.record_download(order_id=order.id, grant=grant, kind="csv", bus=resources.bus)
    chunks = exports.csv_chunks(order=order, cipher=resources.cipher, public_url=resources.settings.public_url)
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


async def download_vouchers_pdf(request: Request) -> Response:
    """The order's vouchers PDF once it is READY, streamed from the database, for a signed URL minted by the API."""
    resources: AppResources = request.app.state.resources
    grant = downloads.verify(
        secret=resources.settings.secret_key,
        token=request.query_params.get("t", ""),
        order_id=request.path_params["order_id"],
        kind="pdf",
    )
    order = await downloads.authorize(grant) if grant else None
    if grant is None or order is None or order.pdf_status != PdfStatus.READY:
        return not_found()
    headers = {
        "Content-Disposition": f'attachment; filename="{order.number}.pdf"',
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    if request.method == "HEAD":  # as for the CSV: no codes leave, so nothing is recorded
        return Response(media_type="application/pdf", headers=headers)
    await exports.record_download(order_id=order.id, grant=grant, kind="pdf", bus=resources.bus)
    stream = pdf_store.pdf_bytes_stream(order.id, resources.cipher)
    return StreamingResponse(stream, media_type="application/pdf", headers=headers)


routes = [
    Route("/downloads/orders/{order_id:int}/codes.csv", download_codes_csv, methods=["GET"]),
    Route("/downloads/orders/{order_id:int}/vouchers.pdf", download_vouchers_pdf, methods=["GET"]),
]
