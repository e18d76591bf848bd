"""Kubeflow commands: compile, run-compiled, schedule.

Defaults come from the `kubeflow` section of the config.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Optional

from fakeface.cli.errors import EXIT_OK, UsageError, WorkFailed


def _compile(args: argparse.Namespace) -> int:
    from fakeface.pipeline import config as config_lib

    config = config_lib.load(args.config)

    from fakeface.pipeline import kfp_platform, kubeflow_runner, pipeline

    try:
        kfp_platform.check_output_path(args.out)
        if pipeline.ensure_local_backbone(config):
            print(f"Built the {config.trainer.backbone} backbone as a TF Hub module at "
                  f"{pipeline.backbone_handle(config)}")
        result = kubeflow_runner.compile_pipeline(config, args.out)
    except kfp_platform.PlatformSpecError as e:
        raise UsageError(e) from e
    for warning in result["warnings"]:
        print(f"fakeface compile: warning: {warning}", file=sys.stderr)
    kubeflow = config.kubeflow
    kind = ("Kubeflow Pipelines YAML: PipelineSpec + Kubernetes PlatformSpec"
            if result["format"] == "kfp-yaml" else
            "Vertex AI PipelineJob JSON: no Kubernetes PlatformSpec, so no node selector or tolerations")
    print(f"Wrote {result['path']} ({kind}); tasks: {', '.join(result['tasks'])}")
    gpu = (f"{kubeflow.trainer_accelerator_count} x {kubeflow.trainer_accelerator_type}"
           if kubeflow.trainer_accelerator_count else "no accelerator")
    trainer = kubeflow.trainer_resources
    print(f"{result['trainer_task']}: {kubeflow.trainer_image}, {gpu}, {trainer.cpu_request}-{trainer.cpu_limit} CPU, "
          f"{trainer.memory_request}-{trainer.memory_limit} memory, {kubeflow.trainer_retries} retries" + (
              f"; node selector {kubeflow.trainer_node_selector}, "
              f"{len(kubeflow.trainer_tolerations)} toleration(s) on executor {result['trainer_executor']}"
              if result["platform_spec"] else ""))
    return EXIT_OK


def _checkout() -> Optional[str]:
    """The checkout this fakeface runs from, if it runs from one (an editable install)."""
    import fakeface

    root = os.path.dirname(os.path.dirname(os.path.abspath(fakeface.__file__)))
    return root if os.path.isfile(os.path.join(root, "setup.py")) else None


def _run_compiled(args: argparse.Namespace) -> int:
    from fakeface.pipeline import compiled_runner, image_env

    try:
        spec = compiled_runner.load(args.spec)
        compiled_runner.check_accepted(spec)
    except compiled_runner.SpecError as e:
        raise UsageError(e) from e
    root = args.pipeline_root or spec.get("defaultPipelineRoot", "")
    if not root or "://" in root:
        raise UsageError(f"the spec's pipeline root {root!r} is not a folder on this machine; "
                         "give one with --pipeline-root DIR")
    project = args.project or _checkout()
    if not project:
        raise UsageError("fakeface is not installed from a checkout; give the checkout the "
                         "images are built from with --project DIR")
    try:
        environment, built = image_env.build(project, os.path.join(os.path.abspath(root), ".image-env"))
    except image_env.ImageEnvError as e:
        raise WorkFailed(e) from e
    print(f"{'Built' if built else 'Reusing'} the image environment {environment.root} "
          f"(fakeface as a wheel from {project})")

    def done(task) -> None:
        print(f"  {task.name:<18} {task.state.lower():<9} {task.seconds:5.0f} s"
              + (f"  ({task.attempts} attempts)" if task.attempts > 1 else ""), flush=True)

    try:
        result = compiled_runner.run(spec, root, environment, on_task_done=done)
    except compiled_runner.SpecError as e:
        raise UsageError(e) from e
    except compiled_runner.TaskFailed as e:
        raise WorkFailed(e) from e
    print(f"Run {result.run_id} of {result.pipeline_name}: artifacts under "
          f"{os.path.join(result.pipeline_root, result.pipeline_name, result.run_id)}")
    for line in compiled_runner.outcome(result):
        print(line)
    return EXIT_OK


def _schedule(args: argparse.Namespace) -> int:
    from fakeface.pipeline import config as config_lib
    from fakeface.pipeline import kfp_platform, schedule

    config = config_lib.load(args.config)
    kubeflow = config.kubeflow
    endpoint = args.endpoint or kubeflow.endpoint
    experiment = args.experiment or kubeflow.experiment
    name = getattr(args, "name", None) or f"{config.pipeline_name}-retrain"
    try:
        client = schedule.connect(endpoint, namespace=args.namespace, timeout=args.timeout,
                                  client_factory=args.client_factory)
        if args.action == "list":
            runs = schedule.list_recurring_runs(client, endpoint, experiment, args.namespace)
            if not runs:
                print(f"No recurring runs in experiment {experiment!r} at {endpoint}.")
            for run in runs:
                cron = getattr(getattr(run.trigger, "cron_schedule", None), "cron", None) or "-"
                print(f"{run.recurring_run_id}  {run.display_name}  cron '{cron}'  {run.status or ''}".rstrip())
            return EXIT_OK
        if args.action == "delete":
            deleted = schedule.delete_recurring_runs(client, endpoint, experiment, name, args.namespace)
            print(f"Deleted {len(deleted)} recurring run(s) named {name!r} in experiment {experiment!r}"
                  + (f": {', '.join(deleted)}" if deleted else "."))
            return EXIT_OK
        cron = args.cron or kubeflow.schedule_cron
        with tempfile.TemporaryDirectory(prefix="fakeface-compile-") as tmp:
            spec_path = args.spec
            if not spec_path:
                from fakeface.pipeline import kubeflow_runner

                spec_path = os.path.join(tmp, f"{config.pipeline_name}.yaml")
                kubeflow_runner.compile_pipeline(config, spec_path)
            result = schedule.create_or_replace(
                client, endpoint, experiment=experiment, name=name, spec_path=spec_path, cron=cron,
                pipeline_root=kubeflow.pipeline_root, namespace=args.namespace, enable_caching=args.cache,
                service_account=args.service_account or kubeflow.service_account or None)
    except schedule.KfpError as e:
        raise WorkFailed(e) from e
    except kfp_platform.PlatformSpecError as e:
        raise UsageError(e) from e
    replaced = f"; replaced {', '.join(result['replaced'])}" if result["replaced"] else ""
    print(f"Recurring run {name!r} ({result['id']}) in experiment {experiment!r} at {endpoint}: "
          f"cron '{cron}', caching {'on' if args.cache else 'off'}{replaced}")
    return EXIT_OK


def register(subparsers) -> None:
    compile_parser = subparsers.add_parser(
        "compile", help="compile the pipeline for Kubeflow Pipelines v2 (.yaml) or Vertex AI (.json)")
    compile_parser.add_argument("--config", help="YAML config file (see pipeline/config.py); defaults otherwise")
    compile_parser.add_argument("out", help="output file: .yaml/.yml for Kubeflow Pipelines, "
                                            ".json for a Vertex AI PipelineJob")
    compile_parser.set_defaults(func=_compile)

    run_compiled = subparsers.add_parser(
        "run-compiled", help="run a compiled .yaml here, task by task, as Kubeflow Pipelines v2 would",
        description="The pre-flight check of a spec before uploading it: every task's container command "
                    "runs here, in an environment with fakeface installed as the image installs it.")
    run_compiled.add_argument("spec", help="a .yaml written by `fakeface compile`")
    run_compiled.add_argument("--pipeline-root", help="local folder for the run's artifacts "
                                                      "(default: the spec's, if it is a local folder)")
    run_compiled.add_argument("--project", help="the checkout the images are built from "
                                                "(default: the one fakeface runs from)")
    run_compiled.set_defaults(func=_run_compiled)

    schedule_parser = subparsers.add_parser(
        "schedule", help="create, list or delete the recurring retraining run on Kubeflow Pipelines")
    actions = schedule_parser.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config file; its kubeflow section gives the defaults")
    common.add_argument("--endpoint", help="KFP API URL (default kubeflow.endpoint)")
    common.add_argument("--experiment", help="KFP experiment (default kubeflow.experiment)")
    common.add_argument("--namespace", help="Kubernetes namespace of a multi-user Kubeflow profile")
    common.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the endpoint before giving up (default 10)")
    named = argparse.ArgumentParser(add_help=False)
    named.add_argument("--name", help="recurring run name (default <pipeline_name>-retrain)")

    create = actions.add_parser("create", parents=[common, named],
                                help="create the recurring run, replacing any of the same name")
    create.add_argument("--cron", help="KFP six-field cron, seconds first (default kubeflow.schedule_cron)")
    create.add_argument("--spec", help="a .yaml from `fakeface compile` (default: compile the config now)")
    create.add_argument("--cache", action="store_true",
                        help="let KFP reuse cached steps (off: a scheduled retrain must see new images)")
    create.add_argument("--service-account",
                        help="Kubernetes service account the run's pods use (default kubeflow.service_account)")
    actions.add_parser("list", parents=[common], help="list the experiment's recurring runs")
    actions.add_parser("delete", parents=[common, named], help="delete the recurring runs of that name")
    # client_factory: a stand-in for kfp.Client (cli.build_parser sets it for tests).
    schedule_parser.set_defaults(func=_schedule, client_factory=None)
