from pathlib import Path

import httpx
import pytest

from tasks.crawl.local_site import require_python_docs, serve_directory


def test_serve_directory_serves_files_and_stops(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html><body>home</body></html>")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "page.html").write_text("<html><body>sub page</body></html>")
    with serve_directory(tmp_path) as base_url:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/")
        home = httpx.get(base_url, trust_env=False)
        page = httpx.get(base_url + "sub/page.html", trust_env=False)
    assert home.status_code == 200 and "home" in home.text
    assert page.headers["content-type"].startswith("text/html") and "sub page" in page.text
    with pytest.raises(httpx.ConnectError):  # the server is gone after the block
        httpx.get(base_url, trust_env=False)


def test_serve_directory_rejects_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="nowhere"), serve_directory(tmp_path / "nowhere"):
        pass


def test_require_python_docs_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"apt-get install python3\.11-doc.*make python-docs"):
        require_python_docs(tmp_path)
    (tmp_path / "index.html").write_text("<html></html>")
    assert require_python_docs(tmp_path) == tmp_path


def test_served_files_answer_conditional_requests(tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_text("<html><body>v1</body></html>")
    with serve_directory(tmp_path) as base_url, httpx.Client(trust_env=False) as client:
        first = client.get(base_url)
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        assert client.get(base_url, headers={"If-None-Match": etag}).status_code == 304
        assert client.get(base_url, headers={"If-Modified-Since": modified}).status_code == 304
        page.write_text("<html><body>v2, saved within the same second</body></html>")
        changed = client.get(base_url, headers={"If-None-Match": etag, "If-Modified-Since": modified})
    assert first.status_code == 200 and changed.status_code == 200  # the ETag sees what the date cannot
    assert "v2" in changed.text and changed.headers["etag"] != etag
