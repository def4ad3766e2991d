module github.com/pontus-ci/pontus/plugins/sdk

go 1.22
