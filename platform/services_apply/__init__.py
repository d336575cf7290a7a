"""One-press service application (服务一键申请): an elder applies with name and ID number, the platform
checks its data, answers what the person is eligible for and routes the request to a provider."""
