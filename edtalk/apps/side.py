"""Part of a plan's run in a second (spawned) process: some stages, or one task.

The parent pickles a copy of its run object (a `PlanRun`: the plan, the options and the stages finished so
far, so `init_from` resolves there too); the child trains the stages in order (`start`; `join` returns their
`StageRun`s) or runs one task (`start_task`; `join` returns the task's results). A failure there is raised
here with the child's traceback; a child that dies without a word is reported with its exit code.
"""

from __future__ import annotations

import dataclasses
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class SideProcess:
    process: Any
    queue: Any
    names: tuple[str, ...] = ()

    @classmethod
    def start(
        cls, job: Any, steps: dict[str, int | None], done: Sequence[Any] = (), tasks: Sequence[str] = ()
    ) -> SideProcess:
        """Train `steps` ({stage: steps}) in order with `job.train`, then run the plan's early `tasks` (they
        make files and return no results); `done`: `StageRun`s finished elsewhere that the child is to know
        as well as `job.stages` (a group before, in another side process)."""
        return cls._launch(job, {"steps": steps, "tasks": tuple(tasks)}, (*steps, *tasks), done)

    @classmethod
    def start_task(cls, job: Any, task: str) -> SideProcess:
        """Run `job.task(task)`."""
        return cls._launch(job, {"task": task}, (task,))

    @classmethod
    def _launch(
        cls, job: Any, work: dict[str, Any], names: tuple[str, ...], done: Sequence[Any] = ()
    ) -> SideProcess:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch/Lightning state
        queue = ctx.Queue()
        # the child logs with print (a caller's log function need not pickle) and starts with no results
        copy = dataclasses.replace(job, log=print, stages=[*job.stages, *done], results={})
        process = ctx.Process(target=_main, args=(copy, work, queue), name="edtalk-side", daemon=True)
        process.start()
        return cls(process, queue, names)

    def join(self) -> Any:
        """Wait for the side work; re-raises a failure there with its traceback."""
        import queue as queue_mod

        while True:
            # alive is read before the get, so a result put just before the child exits is still read
            alive = self.process.is_alive()
            try:
                kind, payload = self.queue.get(timeout=5)
                break
            except queue_mod.Empty:
                if not alive:
                    raise RuntimeError(
                        f"the side process ({', '.join(self.names)}) died with exit code {self.process.exitcode}"
                    ) from None
        self.process.join()
        if kind == "error":
            raise RuntimeError(f"the second process ({', '.join(self.names)}) failed:\n{payload}")
        return payload


@dataclass
class ChainedSide:
    """A side group that starts when the one before it ends, without holding up the main process (a thread
    here waits for the first and starts the next); `join` returns the `StageRun`s of both, in order."""

    names: tuple[str, ...]
    thread: threading.Thread
    outcome: dict[str, Any]

    @classmethod
    def after(
        cls,
        first: SideProcess | ChainedSide,
        names: tuple[str, ...],
        start: Callable[[list[Any]], SideProcess],
    ) -> ChainedSide:
        """`start(runs of first)` launches the next group once `first` is done."""
        outcome: dict[str, Any] = {}

        def chain() -> None:
            try:
                runs = list(first.join())
                outcome["runs"] = runs + list(start(runs).join())
            except BaseException as err:  # re-raised by join, in the main thread
                outcome["error"] = err

        thread = threading.Thread(target=chain, name="edtalk-side-chain", daemon=True)
        thread.start()
        return cls((*first.names, *names), thread, outcome)

    def join(self) -> list[Any]:
        self.thread.join()
        if "error" in self.outcome:
            raise self.outcome["error"]
        return list(self.outcome["runs"])


def _exit_with_parent(poll_s: float = 2.0) -> None:
    """A daemon thread that ends this process when its parent is gone (killed, not exited: a daemon child
    is ended by the parent's normal exit only), so a killed job leaves no orphan training on."""
    import multiprocessing
    import os
    import threading
    import time

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        while parent.is_alive():
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="edtalk-side-parent", daemon=True).start()


def _main(job: Any, work: dict[str, Any], queue: Any) -> None:
    """Entry of the side process: put ("ok", [StageRun]) or ("ok", task results); ("error", traceback)."""
    import torch

    _exit_with_parent()
    torch.set_num_threads(job.threads)
    try:
        if "task" in work:
            queue.put(("ok", job.task(work["task"])))
            return
        runs = []
        for stage, steps in work["steps"].items():
            job.step(stage, f"training (second process, {steps} steps)")
            run = job.train(stage, steps)
            job.done(run)
            job.stages.append(run)
            runs.append(run)  # a StageRun pickles (module-level dataclass of plain values and Paths)
        for task in work.get("tasks", ()):
            job.step(task, "in the second process")
            if job.task(task):
                raise ValueError(f"the early task {task!r} returned results: an early task only writes files")
        queue.put(("ok", runs))
    except BaseException:  # the parent re-raises it with this traceback
        queue.put(("error", traceback.format_exc()))
