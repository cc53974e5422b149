"""How-to: run calls in parallel from several pipelines, with one limit on all of them."""

import trio

import beluga_trio as bt

in_flight = 0
peak = 0


async def call_api(text: str) -> str:
    """A rate-limited API: an embedding, a moderation check, a tool call..."""
    global in_flight, peak  # noqa: PLW0603 - a counter for the demonstration
    in_flight += 1
    peak = max(peak, in_flight)
    try:
        await trio.sleep(0.1)
        return text.upper()
    finally:
        in_flight -= 1


async def main() -> None:
    # One limiter for the whole application: at most 4 calls at once, whichever stage makes them.
    api_limit = trio.CapacityLimiter(4)
    questions = bt.from_iterable([f"q{i}" for i in range(6)])
    documents = bt.from_iterable([f"d{i}" for i in range(6)])
    results: dict[str, list[str]] = {}

    async def run(name: str, stream: bt.Stream[str]) -> None:
        # Up to 4 calls from this stage; results in input order (ordered=True, the default).
        results[name] = await stream.map(call_api, concurrency=api_limit).collect()

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "questions", questions)
        nursery.start_soon(run, "documents", documents)
    print("questions:", results["questions"])
    print("documents:", results["documents"])
    print(f"12 calls, at most {peak} at once, in {trio.current_time() - start:.1f} s")


if __name__ == "__main__":
    trio.run(main)
