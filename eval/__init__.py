"""Evaluation: the main job, the energy comparison and its report.

    from eval import run_main, compare, write_report, load_results, report_from_results
"""
from eval.compare import Report, compare, iso_accuracy
from eval.pipeline import default_tasks, run_main, run_task
from eval.report import load_report, report_from_results, write_report
from eval.results import REPORT_SCHEMA, Results, TaskResult, VariantResult, load_results
from eval.summary import print_summary, summary_tables
from eval.validate import validate_report

__all__ = ["REPORT_SCHEMA", "Report", "Results", "TaskResult", "VariantResult", "compare",
           "default_tasks", "iso_accuracy", "load_report", "load_results", "print_summary",
           "report_from_results", "run_main", "run_task", "summary_tables", "validate_report",
           "write_report"]
