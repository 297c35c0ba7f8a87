from tasks.crawl.frontier import Frontier, FrontierEntry


def test_a_level_is_handed_out_only_when_the_one_above_is_done() -> None:
    frontier = Frontier()
    seed = FrontierEntry("http://a/", 0)
    frontier.add(seed, "a")
    assert frontier.take(lambda host: True) == (seed, "a")
    frontier.add(FrontierEntry("http://a/deep.html", 1), "a")
    frontier.add(FrontierEntry("http://b/moved-target", 0), "b")  # a redirect target stays at depth 0
    assert frontier.take(lambda host: True) == (FrontierEntry("http://b/moved-target", 0), "b")
    assert frontier.take(lambda host: True) is None  # depth 0 still in flight: depth 1 waits
    frontier.done(seed)
    frontier.done(FrontierEntry("http://b/moved-target", 0))
    assert frontier.level() == 1
    assert frontier.take(lambda host: True) == (FrontierEntry("http://a/deep.html", 1), "a")


def test_hosts_take_turns_and_busy_hosts_wait() -> None:
    frontier = Frontier()
    for url, host in [("http://a/1", "a"), ("http://a/2", "a"), ("http://a/3", "a"), ("http://b/1", "b")]:
        frontier.add(FrontierEntry(url, 0), host)
    order = [frontier.take(lambda host: True)[0].url for _ in range(3)]
    assert order == ["http://a/1", "http://b/1", "http://a/2"]
    assert frontier.take(lambda host: host != "a") is None  # only a has entries left, and it is busy
    assert len(frontier) == 1 and not frontier.empty()
