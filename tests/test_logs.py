import json
import logging

from teckochecker.config import Settings
from teckochecker.logs import configure_logging, log_context


def test_json_lines_carry_the_job_batch_and_task(tmp_path, capsys) -> None:
    log_file = tmp_path / "teckochecker.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        configure_logging(Settings(log_format="json", log_file=str(log_file), log_level="INFO"))
        logger = logging.getLogger("teckochecker.test")
        with log_context(job_id=7, task_id="abc"), log_context(batch_id="batch_x"):
            logger.info("batch %s finished", "batch_x")
        logger.info("outside any job")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = saved
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines[0]["message"] == "batch batch_x finished"
    assert (lines[0]["job_id"], lines[0]["batch_id"], lines[0]["task_id"]) == (7, "batch_x", "abc")
    assert lines[0]["level"] == "INFO" and lines[0]["logger"] == "teckochecker.test"
    assert lines[1]["job_id"] is None
    assert json.loads(capsys.readouterr().err.splitlines()[0])["job_id"] == 7


def test_text_lines_name_the_context(tmp_path, capsys) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        configure_logging(Settings(log_level="INFO"))
        with log_context(job_id=3, task_id="t-1"):
            logging.getLogger("teckochecker.test").info("checked")
    finally:
        root.handlers, root.level = saved
    assert "teckochecker.test: checked [job_id=3 task_id=t-1]" in capsys.readouterr().err
