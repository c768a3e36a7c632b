"""The deployments under deploy/ are checked, not only written (issue 12).

No container engine or cluster runs here, so each file is checked as far as
that allows:

* SLURM: the job script dask-jobqueue generates from deploy/slurm's
  configuration (cores, memory, workers per job, each worker's Dask memory
  limit equal to its draconis budget, the install step before the workers;
  bash parses it);
* Kubernetes: the DaskCluster manifest against the Dask operator's CRD schema
  (vendored from dask-kubernetes, unknown fields refused as
  ``kubectl --validate=strict`` does), the plain manifests with
  kubernetes-validate (strict);
* Compose: the file against the Compose specification's schema (vendored),
  and its services, shared volume and memory limits;
* docs/deployment.md names every deploy file.

Each validator is also shown a misspelt field, to prove it would notice.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path

import dask.utils
import jsonschema
import kubernetes_validate
import pytest
import yaml

import draconis

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"


def _docker_bytes(text: str) -> int:
    """Docker/Kubernetes memory quantities: 4g, 4G (Docker: binary), 4Gi."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgG])?(i)?[bB]?", str(text))
    assert match, text
    return int(float(match[1]) * 1024 ** " kmg".index((match[2] or " ").lower()))


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# ---------------------------------------------------------------- SLURM
@pytest.fixture(scope="module")
def slurm():
    spec = importlib.util.spec_from_file_location("draconis_slurm", DEPLOY / "slurm" / "draconis_slurm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cores, processes, memory, threads, per_worker", [
    (4, None, "16GiB", 1, "4GiB"),   # the default: one single-thread worker per core
    (8, 2, "64GiB", 4, "32GiB"),     # two workers of four threads
])
def test_slurm_job_script(slurm, cores, processes, memory, threads, per_worker):
    cluster = slurm.slurm_cluster(queue="regular", account="astro", cores=cores, processes=processes, memory=memory,
                                  walltime="03:00:00", venv="/shared/envs/draconis",
                                  scheduler_options={"dashboard_address": ":0"})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    assert f"#SBATCH --cpus-per-task={cores}" in lines and "#SBATCH -p regular" in lines
    assert "#SBATCH -A astro" in lines and "#SBATCH -t 03:00:00" in lines
    mem = next(line.split("=")[1] for line in lines if line.startswith("#SBATCH --mem="))
    assert dask.utils.parse_bytes(mem + "iB") == dask.utils.parse_bytes(memory)  # SLURM's G is GiB
    (command,) = [line for line in lines if "distributed.cli.dask_worker" in line]
    args = shlex.split(command)
    assert args[0] == "/shared/envs/draconis/bin/python"  # the environment the install step made
    assert int(_flag(args, "--nworkers")) == (processes or cores) and int(_flag(args, "--nthreads")) == threads
    (budget,) = [line.split("=", 1)[1] for line in lines if line.startswith("export DASK_DRACONIS__MEMORY_LIMIT=")]
    assert dask.utils.parse_bytes(_flag(args, "--memory-limit")) == dask.utils.parse_bytes(budget) \
        == dask.utils.parse_bytes(per_worker)
    install = [i for i, line in enumerate(lines) if "pip install" in line]
    assert install and install[0] < lines.index(command)
    assert f'"draconis=={draconis.__version__}"' in lines[install[0]]
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


# ---------------------------------------------------------------- Kubernetes
def _strict(node):
    """Refuse unknown fields where the CRD lists the fields (the API server's strict field validation)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


@pytest.fixture(scope="module")
def daskcluster_validator():
    text = (DEPLOY / "kubernetes" / "schema" / "daskcluster-crd.yaml").read_text()
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 280 kB: libyaml if there
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    body = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]["properties"]))
    schema = {"type": "object", "properties": body, "required": ["spec"]}  # metadata is Kubernetes' own
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]

    def validate(doc: dict) -> list[str]:
        errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(
            {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")})]
        if (doc.get("apiVersion"), doc.get("kind")) != (f"{group}/v1", kind):
            errors.append(f"not a {group}/v1 {kind}")
        return errors
    return validate


def _container_memory(container: dict) -> tuple[int, int, int]:
    """(--memory-limit, DASK_DRACONIS__MEMORY_LIMIT, the container's memory limit) in bytes."""
    args = container.get("args") or container.get("command")
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    return (dask.utils.parse_bytes(_flag(args, "--memory-limit")),
            dask.utils.parse_bytes(env["DASK_DRACONIS__MEMORY_LIMIT"]),
            _docker_bytes(container["resources"]["limits"]["memory"]))


def test_daskcluster_manifest_against_the_operator_crd(daskcluster_validator):
    doc = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    assert daskcluster_validator(doc) == []
    (worker,) = doc["spec"]["worker"]["spec"]["containers"]
    assert len(set(_container_memory(worker))) == 1
    assert {"name": "data", "mountPath": "/data"} in worker["volumeMounts"] and worker["workingDir"] == "/data"
    typo = copy.deepcopy(doc)
    typo["spec"]["worker"]["replica"] = 2
    assert any("replica" in e for e in daskcluster_validator(typo))


def test_plain_kubernetes_manifests_validate(tmp_path):
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "plain.yaml").read_text()))
    for doc in docs:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    service = kinds[("Service", "draconis-scheduler")]
    address = f"tcp://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    worker = kinds[("Deployment", "draconis-worker")]["spec"]["template"]["spec"]
    job = kinds[("Job", "draconis-reduce")]["spec"]["template"]["spec"]
    assert address in worker["containers"][0]["args"] and address in job["containers"][0]["command"]
    assert len(set(_container_memory(worker["containers"][0]))) == 1
    for pod in (worker, job):  # the same claim at the same path
        assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "draconis-data"}}]
        assert pod["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    typo = copy.deepcopy(kinds[("Deployment", "draconis-worker")])
    typo["spec"]["template"]["spec"]["containers"][0]["memoryLimit"] = "4Gi"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)


# ---------------------------------------------------------------- Compose
def test_compose_file_against_the_compose_spec():
    schema = json.loads((DEPLOY / "compose" / "schema" / "compose_spec.json").read_text())
    doc = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    validator = jsonschema.Draft201909Validator(schema)  # the draft its $schema names
    assert [e.message for e in validator.iter_errors(doc)] == []
    services = doc["services"]
    assert set(services) == {"scheduler", "worker", "client"}
    worker, client = services["worker"], services["client"]
    assert worker["volumes"] == client["volumes"] and worker["volumes"][0].endswith(":/data")
    assert worker["working_dir"] == client["working_dir"] == "/data"
    assert (dask.utils.parse_bytes(_flag(worker["command"], "--memory-limit"))
            == dask.utils.parse_bytes(worker["environment"]["DASK_DRACONIS__MEMORY_LIMIT"])
            == _docker_bytes(worker["deploy"]["resources"]["limits"]["memory"]))
    assert "tcp://scheduler:8786" in worker["command"] and "tcp://scheduler:8786" in client["command"]
    typo = copy.deepcopy(doc)
    typo["services"]["worker"]["mem_limt"] = "4g"
    assert any("mem_limt" in e.message for e in validator.iter_errors(typo))


# ---------------------------------------------------------------- docs
def test_every_deploy_file_is_in_the_docs():
    text = (ROOT / "docs" / "deployment.md").read_text()
    files = [p.relative_to(ROOT).as_posix() for p in DEPLOY.rglob("*")
             if p.is_file() and p.name != "README.md" and "__pycache__" not in p.parts]  # (byte code of an import)
    assert files and [f for f in files if f not in text] == []
