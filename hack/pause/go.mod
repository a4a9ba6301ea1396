module outbound.dev/pause

go 1.22
