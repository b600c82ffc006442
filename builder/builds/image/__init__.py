"""Images: the classic and BuildKit engines, build context and cache, push, test, platforms."""
