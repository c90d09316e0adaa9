"""Test tiers and the settings every test process shares.

Tiers (pytest markers, registered in pyproject.toml): every test has exactly one, or collection fails.
  unit         in-process and quick: no sweep, no Python process started (checked: see below)
  integration  sweeps, worker or CLI processes, reports with figures, the gpu-check dry run
  harness      asv and pytest-benchmark run for real
  slurm        needs the local Slurm (tools/slurm-local.sh; skipped, saying why, without one)
  gpu          needs CUDA (skipped without it; tools/gpu-check runs them on a GPU machine)
`make test-fast` runs `-m unit`; `make test` runs every tier, on one pytest-xdist worker per CPU (each
test process uses one torch thread, below; the Slurm tests share one worker, as do the GPU tests).
"""
import os
import subprocess
import sys

# One torch thread per test process and per process it starts (workers, CLI runs inherit the variable):
# the tests assert what a case records, not how fast it runs, and on a machine busy with other work
# (or with a parallel test neighbour) several OpenMP threads per process wait on each other at every
# barrier: a tiny case then takes seconds instead of milliseconds. Set before torch is imported;
# tests about threads set their own count.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import multiprocessing.util  # noqa: E402

import pytest  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
sys.path.insert(0, FIXTURES)

TIERS = ("unit", "integration", "harness", "slurm", "gpu")

# Each test file's tier, and the tests of a file in another tier than the file's (by function name:
# every parametrisation of a function shares its tier). A test marked in its file (pytest.mark.gpu) keeps
# that mark. A new file or test lands in its file's tier: if it starts a Python process it is not unit.
# test_compile.py is integration throughout: torch.compile's first use in a process starts Python.
FILE_TIERS = {
    "test_ab.py": "integration",
    "test_ab_sides.py": "unit",
    "test_ab_verdict.py": "unit",
    "test_predict.py": "integration",
    "test_answer.py": "unit",
    "test_as_built.py": "unit",
    "test_behaviour.py": "unit",
    "test_capacity.py": "unit",
    "test_case.py": "unit",
    "test_cli.py": "unit",
    "test_compile.py": "integration",
    "test_contention.py": "unit",
    "test_dataset.py": "unit",
    "test_docs.py": "unit",
    "test_energy.py": "unit",
    "test_faults.py": "unit",
    "test_fit.py": "unit",
    "test_formats.py": "unit",
    "test_gpu.py": "gpu",
    "test_gpu_check.py": "integration",
    "test_gpus.py": "unit",
    "test_harnesses.py": "unit",
    "test_hostile_inputs.py": "unit",
    "test_layers.py": "unit",
    "test_listing.py": "unit",
    "test_memory.py": "unit",
    "test_models.py": "unit",
    "test_modes.py": "unit",
    "test_plan.py": "unit",
    "test_record.py": "unit",
    "test_report.py": "unit",
    "test_report_compiled.py": "unit",
    "test_report_predictions.py": "unit",
    "test_session.py": "unit",
    "test_slurm.py": "unit",
    "test_state.py": "unit",
    "test_sweep.py": "integration",
    "test_timing.py": "unit",
    "test_zoo_vision.py": "unit",
    "test_zoo_text.py": "unit",
    "test_zoo_runs.py": "unit",
    "test_zoo_peaks.py": "integration",
    "test_setup.py": "unit",
    "test_suites.py": "unit",
}
TEST_TIERS = {
    "test_answer.py::test_report_md_equals_its_golden_file": "integration",
    "test_answer.py::test_a_missing_ratio_row_says_why": "integration",
    "test_answer.py::test_no_table_of_the_report_prints_a_small_ratio_as_zero": "integration",
    "test_answer.py::test_a_full_report_has_no_empty_heading_and_leads_with_the_answer": "integration",
    "test_as_built.py::test_as_built_measures_the_users_own_configuration_and_the_other_modes_say_what_they_overrode": "integration",
    "test_behaviour.py::test_built_in_models_dropout_follows_the_training_flag": "integration",
    "test_behaviour.py::test_dropout_active_is_observed_stochasticity": "integration",
    "test_capacity.py::test_capacity_records_make_the_reports_capacity_section": "integration",
    "test_capacity.py::test_real_cases_fit_at_b_and_not_at_b_plus_1_by_fresh_records": "integration",
    "test_capacity.py::test_without_a_prediction_the_search_probes_from_batch_2_where_batch_1_is_refused": "integration",
    "test_capacity.py::test_running_out_of_memory_is_a_does_not_fit_point": "integration",
    "test_case.py::test_measured_behaviour_matches_truth": "integration",
    "test_cli.py::test_explain_measures_every_mode": "integration",
    "test_cli.py::test_selfcheck_exit_status_is_its_verdict": "integration",
    "test_cli.py::test_unknown_option_is_one_line_exit_2": "integration",
    "test_faults.py::test_a_factory_that_hangs_times_out_once_per_workload": "integration",
    "test_faults.py::test_a_keyboardinterrupt_a_model_raises_is_an_error_and_the_sweep_goes_on": "integration",
    "test_faults.py::test_a_real_ctrl_c_stops_a_sweep_while_a_model_runs": "integration",
    "test_faults.py::test_a_report_that_cannot_be_written_leaves_no_half_written_file": "integration",
    "test_faults.py::test_a_second_run_on_the_same_results_file_is_refused_naming_the_first": "integration",
    "test_faults.py::test_a_sys_exit_in_a_models_forward_is_an_error_and_the_sweep_goes_on": "integration",
    "test_faults.py::test_a_user_module_that_exits_or_crashes_at_import_becomes_records": "integration",
    "test_faults.py::test_a_user_module_that_hangs_at_import_times_out_once_for_all_its_cases": "integration",
    "test_faults.py::test_an_empty_shard_is_a_valid_empty_result": "integration",
    "test_faults.py::test_an_empty_shard_under_any_name_is_an_empty_result": "integration",
    "test_faults.py::test_asv_machine_on_a_full_disk_keeps_the_old_file_whole": "integration",
    "test_faults.py::test_capacity_results_that_cannot_be_written_advise_no_option_capacity_lacks": "integration",
    "test_faults.py::test_capacity_splits_comma_lists_as_run_does": "integration",
    "test_faults.py::test_compare_out_naming_a_file_is_refused": "integration",
    "test_faults.py::test_records_out_of_range_or_unknown_are_skipped_and_overflowing_floats_read_as_null": "integration",
    "test_faults.py::test_records_with_wrong_typed_fields_are_skipped_with_one_warning": "integration",
    "test_faults.py::test_results_that_cannot_be_written_stop_the_run_with_no_partial_line": "integration",
    "test_faults.py::test_sigterm_ends_a_run_with_whole_lines_and_no_lock": "integration",
    "test_faults.py::test_sigterm_says_how_to_resume": "integration",
    "test_formats.py::test_a_reserved_kind_is_left_out_of_the_report_and_said_so": "integration",
    "test_formats.py::test_an_old_release_compares_with_the_last": "integration",
    "test_formats.py::test_each_release_makes_a_report": "integration",
    "test_fit.py::test_run_with_a_tiny_memory_budget_records_not_applicable_and_exits_0": "integration",
    "test_gpus.py::test_a_pinned_worker_sees_only_its_gpu_and_the_manager_keeps_its_environment": "integration",
    "test_gpus.py::test_a_pool_replaces_a_worker_that_died_while_idle": "integration",
    "test_gpus.py::test_a_starting_worker_survives_the_signals_its_manager_handles": "integration",
    "test_gpus.py::test_retries_on_gpus_get_fresh_workers_after_the_first_rounds_threads_end": "integration",
    "test_gpus.py::test_the_threaded_sweep_records_each_case_once_with_its_workers_gpu_index": "integration",
    "test_harnesses.py::test_run_case_and_gradbench_run_write_the_same_fields": "integration",
    "test_hostile_inputs.py::test_a_capacity_record_timed_at_zero_is_skipped_and_never_divided_by": "integration",
    "test_hostile_inputs.py::test_a_gate_whose_every_shared_case_is_untrusted_fails_in_one_line": "integration",
    "test_hostile_inputs.py::test_a_named_pipe_as_any_other_input_file_is_refused": "integration",
    "test_hostile_inputs.py::test_a_named_pipe_as_input_is_refused_in_one_line": "integration",
    "test_hostile_inputs.py::test_a_record_claiming_to_be_a_capacity_search_without_its_answer_is_no_traceback": "integration",
    "test_hostile_inputs.py::test_a_report_of_records_with_a_null_identity_field_is_no_traceback": "integration",
    "test_hostile_inputs.py::test_an_asv_benchmark_whose_param_names_repeat_a_name_is_refused_with_one_warning": "integration",
    "test_hostile_inputs.py::test_compare_csv_has_no_bare_line_break_a_reader_could_start_a_formula_after": "integration",
    "test_hostile_inputs.py::test_compare_csv_neutralises_cells_a_spreadsheet_would_run": "integration",
    "test_hostile_inputs.py::test_compare_figure_draws_long_and_hostile_machine_names_shortened_and_escaped": "integration",
    "test_hostile_inputs.py::test_figures_of_records_that_skipped_reading_still_land_in_their_folder": "integration",
    "test_hostile_inputs.py::test_reading_warnings_name_a_results_file_escaped": "integration",
    "test_hostile_inputs.py::test_report_figures_draw_hostile_asv_machine_names_shortened_and_escaped": "integration",
    "test_hostile_inputs.py::test_report_html_shows_control_characters_from_records_escaped": "integration",
    "test_hostile_inputs.py::test_report_md_carries_no_control_character_from_a_record": "integration",
    "test_hostile_inputs.py::test_report_md_escapes_markup_from_records_and_the_title": "integration",
    "test_hostile_inputs.py::test_report_md_shows_emphasis_code_autolinks_and_bidi_from_records_as_text": "integration",
    "test_layers.py::test_a_local_run_loads_no_slurm_code_and_never_looks_for_sbatch": "integration",
    "test_layers.py::test_no_import_circle_among_module_level_imports": "integration",
    "test_memory.py::test_peak_agrees_with_the_memory_the_kernel_mapped_on_a_big_convolution": "integration",
    "test_memory.py::test_peak_matches_torch_profiler_on_kernels_that_allocate_for_themselves": "integration",
    "test_memory.py::test_saved_bytes_repeat_to_the_byte_and_a_train_step_holds_what_its_forward_holds": "integration",
    "test_report.py::test_compare_by_harness_puts_gradbench_first_whatever_the_input_order": "integration",
    "test_report.py::test_compare_fail_above": "integration",
    "test_memory.py::test_a_process_resident_peak_is_its_own_not_the_one_of_the_process_that_started_it": "integration",
    "test_report.py::test_compare_reports_a_known_difference": "integration",
    "test_report.py::test_ratio_tables_and_findings_never_mix_harnesses": "integration",
    "test_report.py::test_report_findings_cite_their_records": "integration",
    "test_report.py::test_report_of_asv_results_narrowed_by_bench": "integration",
    "test_report.py::test_report_of_one_harness_has_no_side_by_side_section": "integration",
    "test_report.py::test_report_shows_harnesses_side_by_side_with_their_ratio": "integration",
    "test_report.py::test_report_writes_figures_and_both_files": "integration",
    "test_report.py::test_tables_use_the_newest_commit_and_commits_are_not_combined_as_repeats": "integration",
    "test_report_compiled.py::test_report_files_hold_the_compiled_section": "integration",
    "test_session.py::test_a_sys_exit_in_the_models_forward_is_a_capacity_error_not_the_end_of_the_command": "integration",
    "test_session.py::test_capacity_times_its_answer_with_no_probe_still_built": "integration",
    "test_slurm.py::test_a_results_file_with_an_unmerged_slurm_job_is_not_resumed_locally": "integration",
    "test_state.py::test_sweep_names_the_module_and_later_cases_are_unaffected": "integration",
    "test_harnesses.py::test_asv_check_and_quick_run_save_results": "harness",
    "test_harnesses.py::test_pytest_benchmark_suite_writes_extra_info": "harness",
    "test_slurm.py::test_a_job_slurm_refuses_is_one_line_and_leaves_nothing_behind": "slurm",
    "test_slurm.py::test_a_killed_submitter_leaves_the_array_running_and_resume_completes_it_exactly_once": "slurm",
    "test_slurm.py::test_a_slurm_sweep_records_every_case_exactly_once_and_its_report_reads_it": "slurm",
    "test_slurm.py::test_a_task_cancelled_with_scancel_is_recorded_as_crashed_with_its_slurm_state": "slurm",
    "test_slurm.py::test_a_task_past_its_time_limit_is_recorded_as_crashed_with_state_timeout": "slurm",
    "test_slurm.py::test_records_measured_in_a_slurm_array_name_the_array_task_and_host": "slurm",
    "test_slurm.py::test_resume_after_the_job_is_gone_submits_only_the_missing_cases": "slurm",
    "test_zoo_runs.py::test_bert_and_gpt2_every_mode_and_step_with_dropout_in_train_mode_only": "integration",
    "test_sweep.py::test_mode_order_is_shuffled_within_a_group_but_reproducible": "unit",
    "test_sweep.py::test_parse_shard": "unit",
    "test_sweep.py::test_shards_partition_the_grid": "unit",
}


# a minute or more each on a 2-core machine (the Slurm tests, one group, go first too)
LONGEST = {
    "test_gpu_check.py::test_the_dry_run_runs_every_step_on_cpu_and_writes_its_summary",
    "test_harnesses.py::test_asv_check_and_quick_run_save_results",
    "test_zoo_peaks.py::test_peak_bytes_equal_plain_codes_torch_profiler_peak",
    "test_zoo_runs.py::test_bert_and_gpt2_every_mode_and_step_with_dropout_in_train_mode_only",
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects, so that -m sees the tier given here
def pytest_collection_modifyitems(config, items):
    problems = []
    for item in items:
        file, function = item.path.name, getattr(item, "originalname", item.name)
        marked = list(dict.fromkeys(m.name for m in item.iter_markers() if m.name in TIERS))
        listed = TEST_TIERS.get(f"{file}::{function}")
        if listed and listed not in marked:
            marked.append(listed)
        if len(marked) > 1:
            problems.append(f"{item.nodeid}: two tiers ({', '.join(marked)}); give it one")
        elif not marked and file not in FILE_TIERS:
            problems.append(f"{item.nodeid}: no tier; add {file} to FILE_TIERS in tests/conftest.py "
                            f"(one of {', '.join(TIERS)})")
        elif not marked or listed:
            item.add_marker(listed or FILE_TIERS[file])
    if problems:
        raise pytest.UsageError("tests without exactly one tier:\n  " + "\n  ".join(problems))
    for item in items:  # under pytest-xdist (make test), tests that share one cluster or GPU run one at a time
        for tier in ("slurm", "gpu"):
            if item.get_closest_marker(tier):
                item.add_marker(pytest.mark.xdist_group(tier))
    # the longest first, so that under pytest-xdist none of them starts last and runs on alone
    items.sort(key=lambda item: not (item.get_closest_marker("slurm") or
                                     f"{item.path.name}::{getattr(item, 'originalname', item.name)}" in LONGEST))


def _starts_python(args) -> bool:
    program = os.fsdecode(args).split()[0] if isinstance(args, (str, bytes)) else os.fsdecode(args[0])
    return os.path.basename(program).startswith("python") or os.path.realpath(program) == os.path.realpath(
        sys.executable)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_python(request, monkeypatch):
    """A unit test that starts a Python process (a CLI run, a worker, a script) fails, naming the tier it
    belongs in: each such process imports torch, seconds apiece. Other programs (git) are allowed."""
    if request.node.get_closest_marker("unit") is None:
        return
    why = f"{request.node.nodeid} is in the unit tier but starts a Python process: list it as integration " \
          "in tests/conftest.py"
    execute_child = subprocess.Popen._execute_child

    def guarded(self, args, *rest, **kw):
        if _starts_python(args):
            pytest.fail(why)
        return execute_child(self, args, *rest, **kw)

    def no_spawn(*args, **kw):
        pytest.fail(why)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", guarded)
    monkeypatch.setattr(multiprocessing.util, "spawnv_passfds", no_spawn)


@pytest.fixture
def fixtures_dir():
    return FIXTURES
