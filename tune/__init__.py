"""`make tune`: measure candidate serving configs on this machine and write the winners into models.toml."""
