# The gatewayctl CLI image: for merge-request pipelines and for running gatewayctl without a
# local Python. Build: docker build -t gatewayctl:0.1.0 .
# No Envoy (the `envoy` extra): CI jobs never run it; `gatewayctl up` is for laptops. The
# `cachestore` extra (uvloop) is the event loop of `gatewayctl cache-store` on Kubernetes.
#
# The base is pinned to a patch release; pin it by digest as well in your own builds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gatewayctl ./gatewayctl
RUN python -m venv /opt/gatewayctl \
 && /opt/gatewayctl/bin/pip install ".[cachestore]"

FROM ${PYTHON_IMAGE}
# git: `gatewayctl plan --live git:REF` and the rollout merge requests read the repository.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gatewayctl \
 && useradd --system --uid 10001 --gid gatewayctl --create-home --home-dir /home/gatewayctl \
      --shell /usr/sbin/nologin gatewayctl
COPY --from=build /opt/gatewayctl /opt/gatewayctl
# the checkout belongs to the runner's user, not to 10001: let git read it
COPY docker/gitconfig /etc/gitconfig
ENV PATH=/opt/gatewayctl/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /work
# No ENTRYPOINT: GitLab CI runs job scripts through the image's shell.
CMD ["gatewayctl", "--help"]
