// swift-tools-version: 6.0
// How an application uses QARep: a package that depends on it (here by path) and uses the product
// `qarep`. Its main.swift is the README's Swift example, kept identical by scripts/check-snippets.
import PackageDescription

let package = Package(
    name: "classify-example",
    dependencies: [.package(name: "qarep", path: "../..")],
    targets: [
        .executableTarget(name: "Classify", dependencies: [.product(name: "qarep", package: "qarep")]),
    ]
)
