"""The local pool's start method: a fork server that imports augctl once (light: no numpy)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context

# What the fork server imports once for every worker it forks: augctl and the image
# plugins Pillow loads on its first open.
PRELOAD = (
    "augctl.execute",
    "PIL.BmpImagePlugin",
    "PIL.GifImagePlugin",
    "PIL.JpegImagePlugin",
    "PIL.PngImagePlugin",
    "PIL.PpmImagePlugin",
)


def pool_context(resampler: str = "pillow") -> multiprocessing.context.BaseContext:
    """The start method of the local pool: a fork server where the platform has one, else spawn.

    The server is started like a spawned worker (a new interpreter, none of the caller's
    threads) and imports augctl, Pillow's plugins and, for an opencv recipe, OpenCV once;
    every worker is then forked from it. So a pool of N costs one interpreter start-up, not
    N, and a pool rebuilt after a worker's death starts in milliseconds. A server already
    running in this process (started by augctl or anyone else) is reused as it is.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([*PRELOAD, *(["cv2"] if resampler == "opencv" else [])])
    return ctx


def start_server() -> None:
    """Start the fork server now, so it imports augctl while the caller does other work
    (the CLI loads the recipe and plans meanwhile). A no-op where workers are spawned or
    the server already runs."""
    if pool_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
