// swift-tools-version: 6.0
// QARep: deploy-only INT8 runtime for QARepVGG / RepVGG classifiers.
// Dependency arrows point one way: QARepCLI -> QARepOffline -> QARep -> CQARepKernels; bench -> QARep and
// RepVGGArchitectures (the family's layer table, which QARepOffline also uses), not the offline module.
import PackageDescription

// The kernels use OpenMP pragmas only (no omp.h), so the toolchain's clang needs -fopenmp and a libomp to
// link against; Debian's libomp-dev installs libomp.so.5 in the default library path.
// -ffp-contract=off: requantization must use separate multiply and add on every path (no FMA), so that
// scalar, AVX2 and AVX-512 code give identical bytes.
let kernelCFlags: [CSetting] = [
    .unsafeFlags(["-fopenmp", "-ffp-contract=off", "-O3", "-fno-math-errno"]),
]

let package = Package(
    name: "qarep",
    platforms: [.macOS(.v13)],
    products: [
        // libqarep.so: the C ABI (include/qarep.h) and the Swift API.
        .library(name: "qarep", type: .dynamic, targets: ["QARep"]),
        // SwiftPM forbids an executable product with the library's name; `make install` installs it as `qarep`.
        .executable(name: "qarep-cli", targets: ["QARepCLI"]),
        .executable(name: "bench", targets: ["Bench"]),
        .executable(name: "classify-swift", targets: ["SwiftExample"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `swift package generate-documentation --target QARep` (DocC for the public Swift API).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        .target(
            name: "CQARepKernels",
            path: "Sources/CQARepKernels",
            // Kernel files include each other's headers by their place in the tree ("driver/blocked.h").
            cSettings: kernelCFlags + [.headerSearchPath(".")],
            linkerSettings: [.linkedLibrary(":libomp.so.5", .when(platforms: [.linux]))]
        ),
        .target(
            name: "QARep",
            dependencies: ["CQARepKernels", "CQARepAPI"],
            path: "Sources/QARep"
        ),
        // Exposes the public header include/qarep.h to Swift tests of the C ABI.
        .target(name: "CQARepAPI", path: "Sources/CQARepAPI"),
        // libjpeg-turbo and libpng (Debian: libjpeg62-turbo-dev, libpng-dev), for the offline module and CLI only.
        .systemLibrary(name: "CImageCodecs", path: "Sources/CImageCodecs"),
        // OpenBLAS sgemm for the FP32 forward used by calibration (Debian: libopenblas-dev); offline only.
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        // JPEG/PNG/WebP row reader (Debian: libwebp-dev) behind C setjmp boundaries (libjpeg's error_exit must not return; Swift cannot longjmp).
        .target(
            name: "CImageDecode",
            dependencies: ["CImageCodecs"],
            path: "Sources/CImageDecode",
            linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16"), .linkedLibrary("webp")]
        ),
        // The RepVGG family's layer table and a seeded generator: what bench needs of the offline side,
        // without its BLAS.
        .target(name: "RepVGGArchitectures", path: "Sources/RepVGGArchitectures"),
        .target(
            name: "QARepOffline",
            dependencies: ["QARep", "RepVGGArchitectures", "CImageCodecs", "COpenBLAS", "CImageDecode"],
            path: "Sources/QARepOffline"
        ),
        .executableTarget(
            name: "QARepCLI",
            dependencies: ["QARepOffline", "QARep", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/QARepCLI"
        ),
        .executableTarget(
            name: "Bench",
            dependencies: ["QARep", "RepVGGArchitectures", "CQARepKernels", "CQARepAPI"],
            path: "bench",
            exclude: ["compare-peers", "peers", "photo-pipeline", "decode-fidelity", "jpeg-scale-cpu.c", "python-overhead", "ray-vs-cli"]
        ),
        .executableTarget(
            name: "SwiftExample",
            dependencies: ["QARep"],
            path: "examples/swift"
        ),
        .testTarget(name: "QARepKernelTests", dependencies: ["CQARepKernels", "RepVGGArchitectures"]),
        .testTarget(name: "QARepTests", dependencies: ["QARep", "CQARepAPI", "CQARepKernels", "RepVGGArchitectures"]),
        .testTarget(name: "QARepOfflineTests", dependencies: ["QARepOffline", "QARep"]),
    ]
)
