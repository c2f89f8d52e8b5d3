{
  "targets": [
    {
      "target_name": "hastio",
      "sources": ["hastio.cc"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
