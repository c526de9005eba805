from slm_mesh.protocol.framing import LineBuffer, LineTooLong


def feed_all(buf: LineBuffer, *chunks: bytes) -> list[bytes | LineTooLong]:
    return [item for chunk in chunks for item in buf.feed(chunk)]


def test_lines_split_across_chunks_are_joined() -> None:
    buf = LineBuffer(100)
    assert feed_all(buf, b'{"a"', b":1}\n{", b'"b":2}\n') == [b'{"a":1}', b'{"b":2}']


def test_crlf_and_blank_lines_are_tolerated() -> None:
    buf = LineBuffer(100)
    assert feed_all(buf, b"x\r\n\n  \ny\n") == [b"x", b"y"]


def test_a_line_exactly_at_the_cap_passes_and_one_byte_more_does_not() -> None:
    buf = LineBuffer(10)
    assert feed_all(buf, b"a" * 10 + b"\n") == [b"a" * 10]
    assert feed_all(buf, b"a" * 11 + b"\n") == [LineTooLong(10)]


def test_an_oversized_line_is_reported_once_and_skipped_without_buffering_it() -> None:
    buf = LineBuffer(1024)
    out = feed_all(buf, *([b"x" * 4096] * 100))
    assert out == [LineTooLong(1024)]
    assert buf.buffered == 0  # nothing of the 400 KiB line is kept
    assert feed_all(buf, b"tail of the long line\n", b"next\n") == [b"next"]


def test_oversized_line_inside_one_chunk_does_not_eat_the_next_line() -> None:
    buf = LineBuffer(4)
    assert feed_all(buf, b"toolong\nok\n") == [LineTooLong(4), b"ok"]


def test_partial_line_waits_for_its_newline() -> None:
    buf = LineBuffer(100)
    assert feed_all(buf, b"abc") == []
    assert buf.buffered == 3
    assert feed_all(buf, b"\n") == [b"abc"]
