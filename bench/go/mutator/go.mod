module benchmutator

go 1.22
