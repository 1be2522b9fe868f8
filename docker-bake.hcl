# Builds every cardstream image from the repository root (the uv workspace).
#   docker buildx bake                      # the four service images, tagged cardstream/<name>:dev
#   REGISTRY=<account>.dkr.ecr.<region>.amazonaws.com/cardstream TAG=$GITHUB_SHA \
#     docker buildx bake --push             # what CI does on main
#   docker buildx bake cli                  # the `cardstream` command image compose uses
# One Dockerfile for all: targets differ only in PACKAGE, PORT, COMMAND and the tag.

variable "REGISTRY" {
  default = "cardstream"
}

variable "TAG" {
  default = "dev"
}

# ECS task definitions pin X86_64 (infra/src/cardstream_infra/components/fargate_service.py).
variable "PLATFORMS" {
  default = "linux/amd64"
}

group "default" {
  targets = ["ingest-api", "stream-writer", "db-loader", "dashboard"]
}

group "all" {
  targets = ["ingest-api", "stream-writer", "db-loader", "dashboard", "cli"]
}

target "_common" {
  context   = "."
  platforms = split(",", PLATFORMS)
  labels = {
    "org.opencontainers.image.revision" = TAG
  }
}

target "service" {
  name       = item.name
  inherits   = ["_common"]
  matrix = {
    item = [
      { name = "ingest-api", package = "cardstream-ingest-api", module = "ingest_api", port = "8000" },
      { name = "stream-writer", package = "cardstream-stream-writer", module = "stream_writer", port = "8082" },
      { name = "db-loader", package = "cardstream-db-loader", module = "db_loader", port = "8082" },
      { name = "dashboard", package = "cardstream-dashboard", module = "dashboard", port = "8050" },
    ]
  }
  dockerfile = "Dockerfile"
  args = {
    PACKAGE = item.package
    PORT    = item.port
    COMMAND = "python -m ${item.module}"
  }
  tags = ["${REGISTRY}/${item.name}:${TAG}"]
}

target "cli" {
  inherits   = ["_common"]
  dockerfile = "Dockerfile"
  args = {
    PACKAGE = "cardstream"
    PORT    = "5000"
    COMMAND = "cardstream --help"
  }
  tags = ["${REGISTRY}/cli:${TAG}"]
}
