"""`fakeface schedule`: recurring runs of the compiled pipeline on Kubeflow Pipelines.

KFP cannot update a recurring run in place, so "create" replaces: it creates
the new recurring run, then deletes every other one of the same name in the
experiment. Running it twice leaves exactly one recurring run of that name.

Every call to the KFP API goes through `_api`, which turns the many ways a call
can fail (urllib3 connection errors, kfp_server_api.ApiException, kfp's own
TimeoutError after retrying healthz) into one of three KfpError types whose
message names the endpoint and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
from typing import Any, Callable, Iterator, List, Optional

import urllib3

# KFP's API path of the health check, the cheapest authenticated call.
HEALTHZ_PATH = "/apis/v2beta1/healthz"
# Environment variable with a bearer token for KFP endpoints behind authentication.
TOKEN_ENV = "FAKEFACE_KFP_TOKEN"
_PAGE_SIZE = 100


class KfpError(RuntimeError):
    """A KFP API call that failed; the message says what to do."""


class EndpointUnreachable(KfpError):
    pass


class AuthenticationFailed(KfpError):
    pass


class KfpApiError(KfpError):
    pass


def _unreachable(endpoint: str, cause: object) -> EndpointUnreachable:
    return EndpointUnreachable(
        f"cannot reach the Kubeflow Pipelines API at {endpoint} ({cause}). Check the endpoint "
        "(--endpoint or kubeflow.endpoint) and that it is reachable from here, e.g. "
        "`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80` for http://localhost:8080.")


def _auth_failed(endpoint: str, detail: str) -> AuthenticationFailed:
    return AuthenticationFailed(
        f"the Kubeflow Pipelines API at {endpoint} refused the credentials ({detail}). "
        f"Put a valid bearer token in ${TOKEN_ENV} (multi-user Kubeflow), or use an endpoint "
        "without authentication such as a port-forward of ml-pipeline-ui.")


@contextlib.contextmanager
def _api(endpoint: str, action: str) -> Iterator[None]:
    import kfp_server_api

    try:
        yield
    except kfp_server_api.ApiException as e:
        if e.status in (401, 403):
            raise _auth_failed(endpoint, f"HTTP {e.status} {e.reason} while trying to {action}") from e
        if not e.status:
            raise _unreachable(endpoint, e.reason) from e
        body = (e.body.decode(errors="replace") if isinstance(e.body, bytes) else str(e.body or ""))[:300]
        raise KfpApiError(f"the Kubeflow Pipelines API at {endpoint} failed to {action}: "
                          f"HTTP {e.status} {e.reason}: {body}") from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        # OSError includes TimeoutError, which kfp.Client raises after healthz
        # retries, and refused or timed-out sockets.
        raise _unreachable(endpoint, e) from e


def check_endpoint(endpoint: str, token: Optional[str] = None, timeout: float = 10.0) -> None:
    """Fails fast, within `timeout`, when the endpoint is unreachable or refuses us.

    kfp.Client's constructor calls healthz without a timeout and retries API
    errors five times, five seconds apart; a blackholed address would hang and
    a 401 would take half a minute to surface. Redirects are not followed: a
    multi-user Kubeflow answers an unauthenticated call with a redirect to its
    login page.
    """
    parsed = urllib.parse.urlsplit(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise KfpError(f"{endpoint!r} is not an http(s) URL of the Kubeflow Pipelines API, "
                       "e.g. http://localhost:8080")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False)
    try:
        response = http.request("GET", endpoint.rstrip("/") + HEALTHZ_PATH, headers=headers,
                                redirect=False)
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise _unreachable(endpoint, getattr(e, "reason", None) or e) from e
    if response.status in (401, 403):
        raise _auth_failed(endpoint, f"HTTP {response.status} from {HEALTHZ_PATH}")
    if 300 <= response.status < 400:
        raise _auth_failed(endpoint, f"HTTP {response.status} redirect to "
                                     f"{response.headers.get('Location', '?')}, a login page")
    if response.status != 200:
        raise KfpApiError(f"{endpoint}{HEALTHZ_PATH} answered HTTP {response.status}: is this the "
                          "Kubeflow Pipelines API (the ml-pipeline-ui or ml-pipeline service)?")


def connect(endpoint: str, *, namespace: Optional[str] = None, token: Optional[str] = None,
            timeout: float = 10.0, client_factory: Optional[Callable[..., Any]] = None) -> Any:
    """A kfp.Client for `endpoint`, after check_endpoint. `client_factory` replaces kfp.Client in tests."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    check_endpoint(endpoint, token=token, timeout=timeout)
    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    kwargs = {"host": endpoint, "existing_token": token}
    if namespace:
        kwargs["namespace"] = namespace
    with _api(endpoint, "connect"):
        return client_factory(**kwargs)


def _experiment_id(client: Any, endpoint: str, experiment: str, namespace: Optional[str],
                   create: bool) -> Optional[str]:
    with _api(endpoint, f"find experiment {experiment!r}"):
        if create:
            return client.create_experiment(name=experiment, namespace=namespace).experiment_id
        try:
            return client.get_experiment(experiment_name=experiment, namespace=namespace).experiment_id
        except ValueError as e:
            # kfp raises ValueError("No experiment is found with name ...").
            if str(e).startswith("No experiment is found"):
                return None
            raise


def list_recurring_runs(client: Any, endpoint: str, experiment: str,
                        namespace: Optional[str] = None, name: Optional[str] = None) -> List[Any]:
    """Recurring runs of the experiment (all pages), only those named `name` if given."""
    experiment_id = _experiment_id(client, endpoint, experiment, namespace, create=False)
    if experiment_id is None:
        return []
    found: List[Any] = []
    page_token = ""
    api_filter = None
    if name:
        api_filter = json.dumps({"predicates": [
            {"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    while True:
        with _api(endpoint, f"list the recurring runs of experiment {experiment!r}"):
            response = client.list_recurring_runs(page_token=page_token, page_size=_PAGE_SIZE,
                                                  experiment_id=experiment_id, filter=api_filter)
        runs = response.recurring_runs or []
        # The server filters too; checking again keeps a server that ignores
        # the filter from deleting other schedules.
        found.extend(r for r in runs if not name or r.display_name == name)
        page_token = response.next_page_token or ""
        if not page_token:
            return found


def delete_recurring_runs(client: Any, endpoint: str, experiment: str, name: str,
                          namespace: Optional[str] = None) -> List[str]:
    """Deletes every recurring run named `name` in the experiment; returns their ids."""
    deleted = []
    for run in list_recurring_runs(client, endpoint, experiment, namespace, name=name):
        with _api(endpoint, f"delete recurring run {run.recurring_run_id}"):
            client.delete_recurring_run(run.recurring_run_id)
        deleted.append(run.recurring_run_id)
    return deleted


def create_or_replace(client: Any, endpoint: str, *, experiment: str, name: str, spec_path: str,
                      cron: str, pipeline_root: str, namespace: Optional[str] = None,
                      enable_caching: bool = False, service_account: Optional[str] = None) -> dict:
    """Replaces the recurring runs named `name` with one running `spec_path` on `cron`.

    Returns the new id, the ids it replaced and the experiment id.

    `pipeline_root` goes into every run's runtime config: open-source KFP
    takes the root from there, not from the spec, and otherwise falls back to
    its MinIO store, which TensorFlow's file systems cannot write.

    `cron` is KFP's six-field format (seconds first). Caching is off by
    default: KFP caches a task on its input values, and a scheduled retrain
    exists to pick up images added under an unchanged catalog.
    """
    if not spec_path.endswith((".yaml", ".yml")):
        raise KfpError(f"{spec_path}: schedule a .yaml compiled by `fakeface compile` (open-source "
                       "KFP takes the PipelineSpec plus its Kubernetes PlatformSpec from YAML only)")
    if not os.path.isfile(spec_path):
        raise KfpError(f"{spec_path}: no such file; run `fakeface compile {spec_path}` first")
    if len(cron.split()) != 6:
        raise KfpError(f"cron {cron!r} must have KFP's six fields (second minute hour day-of-month "
                       "month day-of-week), e.g. '0 0 3 * * 1' for Mondays 03:00")
    experiment_id = _experiment_id(client, endpoint, experiment, namespace, create=True)
    # Create first, then delete the others: if creating fails, the old
    # schedule keeps running; if deleting fails, running this again finishes it.
    with _api(endpoint, f"create recurring run {name!r}"):
        created = client.create_recurring_run(
            experiment_id=experiment_id, job_name=name, cron_expression=cron,
            pipeline_package_path=spec_path, enable_caching=enable_caching,
            max_concurrency=1, no_catchup=True, pipeline_root=pipeline_root,
            service_account=service_account)
    replaced = []
    for run in list_recurring_runs(client, endpoint, experiment, namespace, name=name):
        if run.recurring_run_id != created.recurring_run_id:
            with _api(endpoint, f"delete recurring run {run.recurring_run_id}"):
                client.delete_recurring_run(run.recurring_run_id)
            replaced.append(run.recurring_run_id)
    return {"id": created.recurring_run_id, "replaced": replaced, "experiment_id": experiment_id}
