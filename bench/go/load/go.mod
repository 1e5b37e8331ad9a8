module benchload

go 1.22
