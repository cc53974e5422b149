"""Sharing: one model reply, watched by subscribers who join late, leave and come back."""

import trio

import beluga_trio as bt
from beluga_trio.llm import ScriptedModel, split_words

model = ScriptedModel(split_words("One reply, produced once, for every tab."), delay=0.1)
seen: dict[str, list[str]] = {}


async def watch(shared: bt.Shared[str], tab: str, after: int | None = None) -> int:
    """Note what this subscriber receives and when; return the seq of the last item seen."""
    log = seen.setdefault(tab, [])
    last = -1 if after is None else after
    log.append(f"  {trio.current_time():.2f}s subscribe(after={after})")
    async with shared.subscribe(after=after).open() as items:
        async for seq, text in items:
            log.append(f"  {trio.current_time():.2f}s #{seq} {text!r}")
            last = seq
            if tab == "A" and seq == 2 and after is None:
                break  # the tab loses its connection
    return last


async def main() -> None:
    deltas = model.stream("Say it once").map(lambda chunk: chunk.delta).filter(bool)
    async with bt.share(deltas, replay=100) as shared, trio.open_nursery() as nursery:

        async def tab_a() -> None:
            last = await watch(shared, "A")
            await trio.sleep(0.22)  # reconnecting...
            await watch(shared, "A", after=last)  # resumes right after the last item it saw

        async def tab_b() -> None:
            await trio.sleep(0.45)  # opens late: the replay first, then live
            await watch(shared, "B")

        nursery.start_soon(tab_a)
        nursery.start_soon(tab_b)
    for tab, lines in seen.items():
        print(f"tab {tab}:", *lines, sep="\n")
    print(f"the model was called {len(model.calls)} time")
