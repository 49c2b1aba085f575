"""Every thread's stack in the log when a service loop stops turning.

A chaos run once saw a sink stop consuming for ten minutes after a broker kill, logging
nothing, until its transaction was found fenced; nothing said where it had waited. A
service that arms this at the top of each loop turn gets every thread's Python stack
written to stderr (its log) once a turn has taken `after_s`: the loop goes on, the next
stall is diagnosed. faulthandler's timer is one per process, so only a process's main
service arms it (never a service run inside tests or benchmarks).
"""

from __future__ import annotations

import faulthandler
import sys


class StallDump:
    def __init__(self, after_s: float) -> None:
        self.after_s = after_s

    def turn(self) -> None:
        """A loop turn begins: dump the stacks if it is not over within `after_s`."""
        if self.after_s > 0:
            faulthandler.dump_traceback_later(self.after_s, repeat=False, file=sys.stderr)

    def stop(self) -> None:
        if self.after_s > 0:
            faulthandler.cancel_dump_traceback_later()
