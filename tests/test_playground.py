"""The playground page in a real headless Chromium (Debian's chromium and chromium-driver; .ci/run installs
them): an empty model list is shown as an error, a prompt's text streams in, a bad request's error shows."""

import shutil
import time

import httpx
import pytest

from .servers import Server, make_home

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install, as .ci/run does)"
)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As root in a container, on a closed network: no sandbox, no GPU, no background connections.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def until(condition, timeout: float = 30, every: float = 0.02):
    """condition()'s first truthy value within timeout seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def test_the_playground_streams_text_and_shows_errors(browser, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    server = Server(home)  # an empty registry: nothing to serve yet
    try:
        by_id = browser.find_element
        browser.get(server.url + "/")
        error = until(lambda: by_id("id", "error").is_displayed() and by_id("id", "error").text)
        assert "No models are served yet" in error and not by_id("id", "generate").is_enabled()

        make_home(home)  # models trained while the server runs: tiny, and endless (never ends by itself)
        browser.refresh()
        until(lambda: len(by_id("id", "model").find_elements("tag name", "option")) == 2)
        assert not by_id("id", "error").is_displayed()
        from selenium.webdriver.support.ui import Select

        Select(by_id("id", "model")).select_by_value("endless")
        by_id("id", "prompt").send_keys("Why did")
        for field, value in (("temperature", "1.2"), ("max-tokens", "4000"), ("seed", "4")):
            by_id("id", field).clear()
            by_id("id", field).send_keys(value)
        by_id("id", "generate").click()
        # The text grows while the request runs: seen at several lengths before it finishes.
        lengths = set()
        until(lambda: lengths.add(len(by_id("id", "completion").text)) or "finished" in by_id("id", "status").text,
              timeout=120, every=0.05)  # fmt: skip
        assert len(lengths - {0, 4000}) >= 2, lengths
        assert by_id("id", "status").text == "finished: length"
        api = httpx.post(f"{server.url}/v1/completions", timeout=60, json={
            "model": "endless", "prompt": "Why did", "temperature": 1.2, "top_p": 1, "max_tokens": 4000, "seed": 4,
        }).json()  # fmt: skip
        assert by_id("id", "prompt-echo").text == "Why did"
        assert browser.execute_script("return document.getElementById('completion').textContent") == (
            api["choices"][0]["text"]
        )
        assert int(by_id("id", "output").get_attribute("data-events")) >= 2

        by_id("id", "temperature").clear()
        by_id("id", "temperature").send_keys("-1")
        by_id("id", "generate").click()
        error = until(lambda: by_id("id", "error").is_displayed() and by_id("id", "error").text)
        assert "temperature must be 0 (greedy) or more" in error
    finally:
        assert server.stop() == 0
