"""The evaluate stage: fine-tune each pretrained model and a from-scratch twin on downstream tasks.

evaluation.py runs the stage (run_evaluation, EvaluateConfig); the tasks it reads are the offline
url-section task (url_section.py), GLUE (glue.py) and local files (file_tasks.py), each handing over a
TaskData (task_data.py) scored by task_metrics.py; intrinsic.py measures MLM accuracy and perplexity on
held-out instances, results.py writes the table and chart. Fine-tuning itself is model/finetune.py.

Must not import MLflow or Prefect: tasks/stages.py logs every fine-tuning run. From the rest of tasks/
it uses tasks.parallel (how its steps run), tasks/corpus/hf_datasets.py (Hugging Face offline) and
tasks/text.py (which characters are CJK); fortunes.py writes the out-of-domain task from a Debian
package (tasks/debian.py).
"""
