# syntax=docker/dockerfile:1.7
# Perp-EX: one image for every service (`perpex indexer|keeper|funding|operator|dashboard`).
#
#   docker build -t perpex:0.1.0 .                                   # compiles the contracts
#   docker build -t perpex:0.1.0 --build-arg CONTRACTS_SOURCE=prebuilt .   # uses contracts/out
#
# Stages:
#   contracts-build     node image: `npm ci` (Foundry's npm binaries, solcjs, OpenZeppelin) and
#                       `scripts/forge.sh build` -> ABIs in contracts/out. Foundry ships as
#                       linux-amd64 npm packages only, so this stage is pinned to amd64 (the
#                       ABIs it produces are platform independent).
#   contracts-prebuilt  copies contracts/out from the build context instead (run
#                       `scripts/forge.sh build` first); for machines that cannot run the
#                       amd64 toolchain or want a faster build.
#   python-build        installs the perpex package and its dependencies into /opt/venv.
#   runtime             python slim, non-root user 10001, no compilers, no node, no shell
#                       tools beyond the base image; ABIs in /opt/perpex/contracts-out.
# The runtime needs a writable /tmp only (Kubernetes mounts an emptyDir there; the root
# filesystem stays read-only).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim
ARG CONTRACTS_SOURCE=build

# ---------------------------------------------------------------- contracts (compiled here)
FROM --platform=linux/amd64 ${NODE_IMAGE} AS contracts-build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY scripts/forge.sh scripts/forge.sh
COPY contracts/ contracts/
RUN rm -rf contracts/out contracts/cache \
    && scripts/forge.sh build \
    && test -f contracts/out/PositionManager.sol/PositionManager.json

# ---------------------------------------------------------------- contracts (prebuilt)
FROM ${PYTHON_IMAGE} AS contracts-prebuilt
WORKDIR /src
COPY contracts/out/ contracts/out/
RUN test -f contracts/out/PositionManager.sol/PositionManager.json \
    || (echo "contracts/out is missing: run scripts/forge.sh build first" >&2; exit 1)

FROM contracts-${CONTRACTS_SOURCE} AS contracts

# ---------------------------------------------------------------- python dependencies
FROM ${PYTHON_IMAGE} AS python-build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (cached while only source changes): install the project's declared
# dependencies from pyproject.toml, then the package itself without touching them again.
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN pip install -r /tmp/requirements.txt
COPY shared/ shared/
COPY services/ services/
COPY perpex_cli/ perpex_cli/
RUN pip install --no-deps . \
    && perpex --help >/dev/null \
    && python -c "import services.operator.cli, kopf, web3, asyncpg, aiokafka"

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="perpex" \
      org.opencontainers.image.description="Perp-EX services: indexer, keeper, funding, operator, dashboard" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 perpex \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/perpex --create-home \
       --shell /usr/sbin/nologin perpex
COPY --from=python-build /opt/venv /opt/venv
COPY --from=contracts /src/contracts/out /opt/perpex/contracts-out
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PERPEX_CONTRACTS_OUT=/opt/perpex/contracts-out \
    HEALTH_PORT=8080
WORKDIR /home/perpex
USER 10001:10001
EXPOSE 8080 8000
ENTRYPOINT ["perpex"]
CMD ["--help"]
