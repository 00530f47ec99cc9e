"""The activities of the Greeting workflow (see :mod:`caravand.examples.greeting`)."""

from caravand import Activity


class NormalizeName(Activity):
    """Strip and capitalize a name: ``"  world "`` -> ``"World"``."""

    name = "NormalizeName"
    version = "1.0"
    default_task_list = "greeting-activities"
    default_task_start_to_close_timeout = "60"
    default_task_schedule_to_close_timeout = "600"

    def run(self):
        return self.task.input_json["value"].strip().capitalize()


class Greet(Activity):
    """Greet a name; fails its first ``fail_attempts`` attempts, to show retries."""

    name = "Greet"
    version = "1.0"
    default_task_list = "greeting-activities"
    default_task_start_to_close_timeout = "60"
    default_task_schedule_to_close_timeout = "600"

    def run(self):
        params = self.task.input_json
        if params["attempt"] <= params.get("fail_attempts", 0):
            raise RuntimeError(f"attempt {params['attempt']} fails on purpose")
        return f"Hello, {params['value']}!"
