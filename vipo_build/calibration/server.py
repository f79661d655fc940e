"""`vipo-build label`: the A/B labelling web app over a root's calibration sample.

    GET  /                      the labelling page (static/label.html)
    GET  /agreement             the live agreement page: the report `calibrate --labels` writes
    GET  /api/next?rater=R      the rater's next screen and progress
    POST /api/answer            {rater, key, pick: left|right|skip, seconds}: committed, then the next screen
    POST /api/undo              {rater}: the rater's last answer deleted, its screen shown again
    GET  /api/agreement         the report as JSON
    GET  /media/{key}/{A|B}     a candidate of a sampled pair; nothing else of the root is served

With a token every request needs it (query `token`, once: it is then kept in a cookie; or the
X-Vipo-Token header).
"""

from __future__ import annotations

import posixpath
import secrets
import socket
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware
from pydantic import Field
from rich.console import Console

from vipo_build.calibration.assign import left_slot, next_pair, open_pairs
from vipo_build.calibration.gold import check_gold_floor
from vipo_build.calibration.report import score
from vipo_build.calibration.sample import Sample, export_sample, read_sample
from vipo_build.calibration.store import AlreadyAnswered, LabelStore
from vipo_build.errors import VipoError
from vipo_build.layout import CALIBRATION_DIR, LABELS_DB, SAMPLE_TABLE
from vipo_build.root import open_root
from vipo_build.runtime.storage import Storage
from vipo_build.strict import StrictModel

RATER_ID = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
TOKEN_COOKIE = "vipo_token"
TOKEN_HEADER = "x-vipo-token"
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "mp4": "video/mp4"}
PAGES = {"/": ("label.html", "text/html"), "/agreement": ("agreement.html", "text/html"),
         "/label.js": ("label.js", "text/javascript"), "/agreement.js": ("agreement.js", "text/javascript"),
         "/style.css": ("style.css", "text/css")}
DEFAULT_SAMPLE = 200
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class Answer(StrictModel):
    rater: str = Field(pattern=RATER_ID)
    key: str = Field(max_length=512)
    pick: Literal["left", "right", "skip"]
    seconds: float = Field(ge=0, le=86_400, description="From the screen's media being shown to the answer.")


class Undo(StrictModel):
    rater: str = Field(pattern=RATER_ID)


@dataclass(frozen=True)
class Labelling:
    storage: Storage
    sample: Sample
    store: LabelStore
    overlap: int
    gold_floor: float

    def state(self, rater: str, key: str | None = None) -> dict:
        """What the page shows the rater: progress, and the screen of `key` (default: their next pair)."""
        standing = open_pairs(self.sample, self.store.answers(), rater, self.overlap)
        key = key or next_pair(self.sample, standing, rater)
        return {"progress": {"answered": standing.answered, "open": len(standing.regular) + len(standing.gold)},
                "screen": None if key is None else self.screen(key, rater)}

    def screen(self, key: str, rater: str) -> dict:
        row = self.sample.rows[key]
        left = left_slot(self.sample, key, rater)
        right = "B" if left == "A" else "A"
        version = f"?v={self.sample.digest[:12]}"  # a new export redraws the sides: the browser's cached media must not be reused
        return {"key": key, "category": row["category"], "modality": row["modality"], "prompt": row["prompt"],
                "rubric": row["rubric"], "left": {"slot": left, "url": f"media/{quote(key, safe='')}/{left}{version}"},
                "right": {"slot": right, "url": f"media/{quote(key, safe='')}/{right}{version}"}}

    def report(self) -> dict:
        return score(self.sample, self.store.answers(), posixpath.join(self.storage.url, SAMPLE_TABLE), self.store.path,
                     self.gold_floor).model_dump(mode="json")


def make_app(labelling: Labelling, token: str | None, host: str = "127.0.0.1") -> FastAPI:
    app = FastAPI(title="vipo-build labelling", docs_url=None, redoc_url=None, openapi_url=None)
    sample = labelling.sample
    if host not in WILDCARD_HOSTS:  # a page on another site cannot reach a loopback server through a rebound DNS name
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=[host, *LOOPBACK_NAMES])

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if token is None:
            return await call_next(request)
        given = request.query_params.get("token") or request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE) or ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"detail": "a valid token is needed: open the URL the server printed"}, status_code=401)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    for route, (name, media_type) in PAGES.items():
        body = resources.files("vipo_build.calibration").joinpath("static", name).read_bytes()
        app.add_api_route(route, _static(body, media_type), methods=["GET"], include_in_schema=False)

    @app.get("/api/next")
    def next_screen(rater: str = Query(pattern=RATER_ID)) -> dict:
        return labelling.state(rater)

    @app.post("/api/answer")
    def answer(given: Answer) -> dict:
        if given.key not in sample.rows:
            raise HTTPException(404, f"{given.key!r} is not in the calibration sample")
        left = left_slot(sample, given.key, given.rater)
        choice = {"left": left, "right": "B" if left == "A" else "A", "skip": "skip"}[given.pick]
        try:
            labelling.store.add(given.key, given.rater, choice, left, given.seconds)
        except AlreadyAnswered as err:
            if err.choice != choice:  # a repeated request is fine; a different answer needs an undo first
                raise HTTPException(409, f"{given.rater} already answered {given.key} with {err.choice}: undo it first") from None
        return {"saved": choice, **labelling.state(given.rater)}

    @app.post("/api/undo")
    def undo(given: Undo) -> dict:
        key = labelling.store.undo_last(given.rater)
        return {"undone": key, **labelling.state(given.rater, key)}

    @app.get("/api/agreement")
    def agreement() -> dict:
        return labelling.report()

    @app.get("/media/{key}/{slot}")
    def media(key: str, slot: str) -> Response:
        row = sample.rows.get(key)
        if row is None or slot not in ("A", "B"):
            raise HTTPException(404)
        file = row["a_file"] if slot == "A" else row["b_file"]
        data = labelling.storage.read_bytes(f"{CALIBRATION_DIR}/{file}")
        return Response(data, media_type=MEDIA_TYPES.get(file.rsplit(".", 1)[-1], "application/octet-stream"),
                        headers={"Cache-Control": "private, max-age=86400"})

    return app


def _static(body: bytes, media_type: str):
    def page() -> Response:
        return Response(body, media_type=media_type)
    return page


def default_db(storage: Storage, root: str) -> str:
    if not storage.is_local:
        raise VipoError(f"{root}: SQLite cannot live in an object store; give --db PATH for the label database")
    return str(Path(storage.root) / LABELS_DB)


def check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a restart need not wait out TIME_WAIT
        try:
            probe.bind((host, port))
        except OSError as err:
            raise VipoError(f"--port {port}: cannot listen on {host}:{port} ({err.strerror})") from None


def serve(root: str, host: str, port: int, db: str | None, sample_size: int | None, gold_share: float, seed: int,
          overlap: int, gold_floor: float, token: str | None, console: Console) -> None:
    """Export the sample where there is none (or check it is the one asked for), then serve until stopped."""
    import uvicorn

    if overlap < 1:
        raise VipoError(f"--overlap {overlap}: every pair needs at least 1 label")
    storage = open_root(root)
    check_gold_floor(gold_floor)
    if sample_size is not None or not storage.exists(SAMPLE_TABLE):
        export_sample(root, DEFAULT_SAMPLE if sample_size is None else sample_size, seed, gold_share)
    sample = read_sample(storage)
    labelling = Labelling(storage, sample, LabelStore(db or default_db(storage, root), sample.digest), overlap, gold_floor)
    check_port_free(host, port)
    query = f"?token={quote(token)}" if token else ""
    console.print(f"labelling {len(sample.rows)} pairs ({len(sample.gold_winners)} gold) at http://{host}:{port}/{query}  "
                  f"agreement: http://{host}:{port}/agreement{query}  labels: {labelling.store.path}", markup=False, highlight=False)
    uvicorn.run(make_app(labelling, token, host), host=host, port=port, log_level="warning")
