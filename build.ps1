<#
.SYNOPSIS
    Installs what is missing, builds DeltaMigrate, and runs its tests or its demo.

.DESCRIPTION
    dotnet tool restore && dotnet pwsh ./build.ps1 demo    # set up, build, live-migrate a VM
    dotnet tool restore && dotnet pwsh ./build.ps1 test    # set up, build, run every test

    Tasks:
      deps   install QEMU 7.2 (apt), QEMU 10.0 (Debian 12 backports, unpacked into .tools/),
             OpenSSH server and client (apt, for the test hosts), libvirt 9.0 (apt, for the
             libvirt test hosts; no system libvirtd is left running), Pester and an older
             Microsoft.Extensions.Logging.Abstractions for the isolation test (NuGet, into .tools/)
             and compile the test guest. A second run does nothing.
      build  deps, then compile the module into module/bin (Import-Module ./DeltaMigrate.psd1).
      package  build, then lay the module out as installed (out/DeltaMigrate/<version>/) and publish
             it with PSResourceGet to a local file repository: out/repo/DeltaMigrate.<version>.nupkg.
      test   package, then dotnet format --verify-no-changes, xUnit, and Pester (in a fresh pwsh)
             against the package installed with Install-PSResource into a temporary module path.
      demo   build, then start two local VMs and live-migrate one into the other.
      bench  build, then real migrations over shaped links (root) into docs/benchmarks.md:
             the full grid, 3 runs per cell (~50 min); -Quick a reduced grid in under 10 minutes
             (docs/benchmarks-quick.md).
      clean  remove build output (keeps .tools/).
#>
[CmdletBinding()]
param(
    [Parameter(Position = 0)]
    [ValidateSet('deps', 'build', 'package', 'test', 'demo', 'bench', 'clean')]
    [string] $Task = 'build',

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',

    # Runs only the Pester files whose name matches (e.g. 'Move'); xUnit still runs in full.
    [string] $PesterFilter = '*',

    # bench: which cells of tests/bench/Invoke-MigrationBenchmark.ps1 to run (e.g. '100mbit/scatter/*'); a subset does not rewrite docs/benchmarks.md.
    [string[]] $BenchCell = @('*'),

    # bench: the reduced grid (under 10 minutes) that writes docs/benchmarks-quick.md.
    [switch] $Quick
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Root = $PSScriptRoot
Set-Location $Root   # dotnet finds the pinned pwsh tool from here
$Tools = Join-Path $Root '.tools'
$PesterVersion = '5.7.1'
# Older than the engine's (Directory.Packages.props): what the isolation test preloads.
$ConflictingLoggingVersion = '6.0.0'
$Qemu10Packages = 'qemu-system-x86', 'qemu-system-data', 'seabios'

function Write-Step([string] $Message) { Write-Host "==> $Message" -ForegroundColor Cyan }
function Write-Done([string] $Message) { Write-Host "    $Message" }

function Invoke-Native {
    # Runs a program and stops the build when it fails, naming the command. A plain function
    # (no param block), so flags such as -o or -v reach the program instead of PowerShell.
    $file, $arguments = $args
    $arguments = @($arguments | ForEach-Object { $_ })   # flatten arrays passed as one argument
    & $file @arguments
    if ($LASTEXITCODE -ne 0) { throw "'$file $($arguments -join ' ')' failed with exit code $LASTEXITCODE." }
}

function Test-Root { (& id -u) -eq '0' }

function Install-Qemu72 {
    if (Get-Command qemu-system-x86_64 -ErrorAction Ignore) {
        Write-Done "QEMU: $((& qemu-system-x86_64 --version)[0])"
        return
    }
    if (-not (Test-Root)) {
        throw "QEMU is not installed. Run: sudo apt-get update && sudo apt-get install -y qemu-system-x86 iproute2"
    }
    Write-Step 'Installing QEMU 7.2 (apt-get install qemu-system-x86)'
    $env:DEBIAN_FRONTEND = 'noninteractive'
    Invoke-Native apt-get update -qq
    Invoke-Native apt-get install -y -qq qemu-system-x86 iproute2
}

function Install-Ssh {
    # Test hosts (tests/pester/TestHosts.ps1) run their own sshd inside a network namespace, and
    # pwsh's SSH remoting runs the ssh client binary; neither is a service of this machine.
    $missing = @(
        if (-not (Test-Path /usr/sbin/sshd)) { 'openssh-server' }
        if (-not (Get-Command ssh -ErrorAction Ignore) -or -not (Get-Command ssh-keygen -ErrorAction Ignore)) { 'openssh-client' }
    )
    if (-not $missing) {
        Write-Done "OpenSSH: $((& ssh -V 2>&1) -join ' ')"
        return
    }
    if (-not (Test-Root)) {
        throw "$($missing -join ' ') is not installed. Run: sudo apt-get update && sudo apt-get install -y $($missing -join ' ')"
    }
    Write-Step "Installing $($missing -join ', ') (apt-get install $($missing -join ' '))"
    $env:DEBIAN_FRONTEND = 'noninteractive'
    Invoke-Native apt-get update -qq
    Invoke-Native apt-get install -y -qq $missing
}

$LibvirtPackages = 'libvirt-daemon-system', 'libvirt-daemon-system-sysv', 'libvirt-daemon-driver-qemu', 'libvirt-clients', 'libvirt0'

function Install-Libvirt {
    # The libvirt tests (tests/pester/LibvirtHosts.ps1) start their own libvirtd per test host, with
    # private config and state; the machine's own libvirt service must not run beside them.
    if ((Test-Path /usr/sbin/libvirtd) -and (Get-Command virsh -ErrorAction Ignore)) {
        Write-Done "libvirt: $((& /usr/sbin/libvirtd --version) -join ' ') (skipped)"
        return
    }
    if (-not (Test-Root)) {
        throw "libvirt is not installed. Run: sudo apt-get update && sudo apt-get install -y --no-install-recommends $($LibvirtPackages -join ' ')"
    }
    Write-Step "Installing libvirt (apt-get install $($LibvirtPackages -join ' '))"
    # The sysv flavour: the systemd one drags a systemd upgrade in, and no systemd runs here. Its
    # postinst would start libvirtd through invoke-rc.d; a policy-rc.d that answers 101 forbids that.
    $policy = '/usr/sbin/policy-rc.d'
    $ownPolicy = -not (Test-Path $policy)
    if ($ownPolicy) { "#!/bin/sh`nexit 101" | Set-Content $policy; Invoke-Native chmod 755 $policy }
    try {
        $env:DEBIAN_FRONTEND = 'noninteractive'
        Invoke-Native apt-get update -qq
        Invoke-Native apt-get install -y -qq --no-install-recommends $LibvirtPackages
    }
    finally { if ($ownPolicy) { Remove-Item $policy } }
    foreach ($daemon in 'libvirtd', 'virtlogd', 'virtlockd') {
        foreach ($p in Get-Process -Name $daemon -ErrorAction Ignore) {
            Write-Done "stopping the system $daemon ($($p.Id)) that the package started"
            $p.Kill(); $p.WaitForExit(10000) | Out-Null
        }
    }
    Write-Done "libvirt: $((& /usr/sbin/libvirtd --version) -join ' ')"
}

function Get-DebianMirror {
    # The machine's own configured Debian mirror (deb822 .sources or one-line sources.list).
    $files = @(Get-ChildItem /etc/apt/sources.list.d -Filter *.sources -ErrorAction Ignore) +
        @(Get-Item /etc/apt/sources.list -ErrorAction Ignore) | Where-Object { $_ }
    foreach ($file in $files) {
        $text = Get-Content -Raw $file.FullName
        if ($file.Extension -eq '.sources') {
            foreach ($stanza in $text -split "\n\s*\n") {
                if ($stanza -match '(?m)^Suites:.*\bbookworm\b' -and $stanza -match '(?m)^URIs:\s*(\S+)') {
                    return $Matches[1]
                }
            }
        }
        elseif ($text -match '(?m)^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s') {
            return $Matches[1]
        }
    }
    throw 'No Debian 12 (bookworm) mirror is configured in /etc/apt; QEMU 10.0 comes from bookworm-backports.'
}

function Install-Qemu10 {
    $dir = Join-Path $Tools 'qemu10'
    $binary = Join-Path $dir 'usr/bin/qemu-system-x86_64'
    if (Test-Path $binary) {
        Write-Done "QEMU 10: $binary"
        return
    }
    if (-not (Test-Root)) {
        throw "QEMU 10.0 is unpacked from Debian 12 backports, which needs root to add the apt source. Run this build as root once."
    }
    Write-Step 'Unpacking QEMU 10.0 from bookworm-backports into .tools/qemu10'
    $list = '/etc/apt/sources.list.d/deltamigrate-backports.list'
    if (-not (Test-Path $list)) {
        # Backports are never installed from automatically (priority 100): this only lets us download.
        "deb $(Get-DebianMirror) bookworm-backports main" | Set-Content $list
        Write-Done "added $list"
    }
    Invoke-Native apt-get update -qq
    $download = Join-Path $Tools 'debs'
    New-Item -ItemType Directory -Force $download, $dir | Out-Null
    Push-Location $download
    try {
        Get-ChildItem -Filter *.deb | Remove-Item
        Invoke-Native apt-get download -qq ($Qemu10Packages | ForEach-Object { "$_/bookworm-backports" })
        foreach ($deb in Get-ChildItem -Filter *.deb) { Invoke-Native dpkg-deb -x $deb.FullName $dir }
    }
    finally { Pop-Location }
    # Its shared libraries all come with Debian 12's QEMU 7.2 (checked on a fresh machine).
    $missing = & ldd $binary | Select-String 'not found'
    if ($missing) { throw "QEMU 10 needs libraries this machine lacks: $($missing -join '; '). Install the Debian 12 packages that provide them." }
    Write-Done "QEMU 10: $((& $binary --version)[0])"
}

function Restore-NuGetPackage([string] $Id, [string] $Version) {
    # A throw-away project outside the repository, so the repository's build settings don't apply.
    $project = Join-Path ([IO.Path]::GetTempPath()) "deltamigrate-restore-$PID"
    New-Item -ItemType Directory -Force $project | Out-Null
    try {
        @"
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><TargetFramework>net10.0</TargetFramework></PropertyGroup>
  <ItemGroup><PackageDownload Include="$Id" Version="[$Version]" /></ItemGroup>
</Project>
"@ | Set-Content (Join-Path $project 'restore.csproj')
        Invoke-Native dotnet restore (Join-Path $project 'restore.csproj') --packages (Join-Path $Tools 'nuget') --nologo --verbosity quiet
    }
    finally { Remove-Item -Recurse -Force $project }
}

function Install-Pester {
    $manifest = Join-Path $Tools "nuget/pester/$PesterVersion/tools/Pester.psd1"
    if (Test-Path $manifest) {
        Write-Done "Pester: $PesterVersion"
        return $manifest
    }
    Write-Step "Restoring Pester $PesterVersion from NuGet into .tools/nuget"
    Restore-NuGetPackage Pester $PesterVersion
    return $manifest
}

function Install-ConflictingLogging {
    # tests/pester/Isolation.Tests.ps1 loads this older Microsoft.Extensions.Logging.Abstractions into a
    # session before the module, as another module would; the engine must still get its own.
    $dll = Join-Path $Tools "nuget/microsoft.extensions.logging.abstractions/$ConflictingLoggingVersion/lib/net6.0/Microsoft.Extensions.Logging.Abstractions.dll"
    if (Test-Path $dll) {
        Write-Done "Microsoft.Extensions.Logging.Abstractions $ConflictingLoggingVersion (isolation test)"
        return
    }
    Write-Step "Restoring Microsoft.Extensions.Logging.Abstractions $ConflictingLoggingVersion from NuGet into .tools/nuget (isolation test)"
    Restore-NuGetPackage Microsoft.Extensions.Logging.Abstractions $ConflictingLoggingVersion
    if (-not (Test-Path $dll)) { throw "The restored package has no $dll." }
}

function Build-Guest {
    Invoke-Native bash (Join-Path $Root 'tests/guest/build.sh')
    Write-Done 'test guest: tests/guest/out/guest.elf'
}

function Invoke-Deps {
    Write-Step 'Checking prerequisites'
    Install-Qemu72
    Install-Qemu10
    Install-Ssh
    Install-Libvirt
    $script:PesterManifest = Install-Pester
    Install-ConflictingLogging
    Build-Guest
}

function Invoke-Build {
    Invoke-Deps
    Write-Step "Building the module ($Configuration) into module/bin"
    # From empty, so files an older build published (e.g. other RIDs' natives) never reach the package.
    Remove-Item -Recurse -Force (Join-Path $Root 'module/bin') -ErrorAction Ignore
    $bin = Join-Path $Root 'module/bin'
    Invoke-Native dotnet publish (Join-Path $Root 'src/DeltaMigrate.Module') -c $Configuration -o $bin --nologo --verbosity quiet
    # Only the cmdlet assembly and the loader (DeltaMigrate.Isolation) stay beside the manifest, in PowerShell's default load context; the engine,
    # the reports and every library they use (natives under runtimes/) go into dependencies/, which
    # PowerShell does not probe: the loader puts them into the module's own AssemblyLoadContext
    # (src/DeltaMigrate.Isolation/ModuleInitializer.cs). The deps.json describes the flat layout: dropped.
    $dependencies = Join-Path $bin 'dependencies'
    New-Item -ItemType Directory -Force $dependencies | Out-Null
    Remove-Item (Join-Path $bin 'DeltaMigrate.deps.json') -ErrorAction Ignore
    Get-ChildItem $bin -Exclude 'DeltaMigrate.dll', 'DeltaMigrate.pdb', 'DeltaMigrate.Isolation.dll', 'DeltaMigrate.Isolation.pdb', 'dependencies' | Move-Item -Destination $dependencies
    # PowerShell looks for a binary module's help only beside its manifest (the repository root).
    Copy-Item -Recurse -Force (Join-Path $Root 'module/en-US') $Root
}

function Invoke-PSResourceGet([string] $HomeDirectory, [string] $Script) {
    # PSResourceGet keeps its repository list and CurrentUser modules under $HOME: a private HOME, in a
    # pwsh of its own, keeps the build's repository and installs out of the user's.
    $data = Join-Path $HomeDirectory '.local/share'
    # Both must exist, or .NET hands PSResourceGet and NuGet '' and they write into the current folder.
    $null = New-Item -ItemType Directory -Force $data, (Join-Path $HomeDirectory '.config')
    $saved = $env:HOME, $env:XDG_DATA_HOME
    $env:HOME = $HomeDirectory; $env:XDG_DATA_HOME = $data
    try { Invoke-Native (Join-Path $PSHOME 'pwsh') -NoProfile -NonInteractive -Command "`$ErrorActionPreference = 'Stop'; $Script" }
    finally { $env:HOME, $env:XDG_DATA_HOME = $saved }
}

function Invoke-Package {
    Invoke-Build
    $version = (Import-PowerShellDataFile (Join-Path $Root 'DeltaMigrate.psd1')).ModuleVersion
    $out = Join-Path $Root 'out'
    $dir = Join-Path $out "DeltaMigrate/$version"
    $script:PackageRepository = Join-Path $out 'repo'
    Write-Step "Packaging DeltaMigrate $version into out/DeltaMigrate/$version and out/repo"
    Remove-Item -Recurse -Force (Join-Path $out 'DeltaMigrate'), $PackageRepository, (Join-Path $out 'home') -ErrorAction Ignore
    New-Item -ItemType Directory -Force $dir, $PackageRepository | Out-Null
    Copy-Item -Recurse (Join-Path $Root 'module/bin/*') $dir
    Copy-Item -Recurse (Join-Path $Root 'module/*') $dir -Exclude bin
    Copy-Item (Join-Path $Root 'LICENSE') $dir
    # One manifest: the repository's, with its module/ paths made relative to the package folder.
    $manifest = (Get-Content -Raw (Join-Path $Root 'DeltaMigrate.psd1')) -replace "'module/(bin/)?", "'"
    if ($manifest -match 'module/') { throw "DeltaMigrate.psd1 names a module/ path the package step does not map: $($manifest -split "`n" -match 'module/')" }
    [IO.File]::WriteAllText((Join-Path $dir 'DeltaMigrate.psd1'), $manifest)
    $null = Test-ModuleManifest (Join-Path $dir 'DeltaMigrate.psd1')
    Invoke-PSResourceGet (Join-Path $out 'home') @"
Register-PSResourceRepository -Name DeltaMigrateBuild -Uri '$PackageRepository' -Trusted
Publish-PSResource -Path '$dir' -Repository DeltaMigrateBuild
"@
    Remove-Item -Recurse -Force (Join-Path $out 'home')
    $nupkg = Get-Item (Join-Path $PackageRepository "DeltaMigrate.$version.nupkg")
    $size = (Get-ChildItem -Recurse -File $dir | Measure-Object Length -Sum).Sum
    Write-Done ("{0} ({1:0.0} MiB); installed {2:0.0} MiB" -f $nupkg.FullName, ($nupkg.Length / 1MB), ($size / 1MB))
}

function Install-TestPackage {
    # What users install is what Pester tests: the .nupkg, installed by Install-PSResource into a
    # fresh temporary module path that the Pester process puts first in PSModulePath.
    $version = (Import-PowerShellDataFile (Join-Path $Root 'DeltaMigrate.psd1')).ModuleVersion
    $installHome = Join-Path ([IO.Path]::GetTempPath()) "deltamigrate-install-$PID"
    Remove-Item -Recurse -Force $installHome -ErrorAction Ignore
    Write-Step "Installing DeltaMigrate $version from out/repo with Install-PSResource (into $installHome)"
    Invoke-PSResourceGet $installHome @"
Register-PSResourceRepository -Name DeltaMigrateBuild -Uri '$PackageRepository' -Trusted
Install-PSResource -Name DeltaMigrate -Version '$version' -Repository DeltaMigrateBuild -Scope CurrentUser -TrustRepository
"@
    $installHome
}

function Get-TrxCounts([string] $Directory) {
    $passed = 0; $failed = 0; $skipped = 0
    foreach ($trx in Get-ChildItem $Directory -Filter *.trx -Recurse -ErrorAction Ignore) {
        $counters = ([xml](Get-Content -Raw $trx.FullName)).TestRun.ResultSummary.Counters
        $passed += [int]$counters.passed
        $failed += [int]$counters.failed + [int]$counters.error + [int]$counters.timeout
        $skipped += [int]$counters.notExecuted
    }
    [pscustomobject]@{ Passed = $passed; Failed = $failed; Skipped = $skipped }
}

function Invoke-Test {
    Invoke-Package
    Write-Step 'dotnet format --verify-no-changes'
    Invoke-Native dotnet format (Join-Path $Root 'DeltaMigrate.sln') --verify-no-changes --verbosity quiet

    Write-Step 'xUnit (engine)'
    $results = Join-Path $Root 'artifacts/test-results'
    Remove-Item -Recurse -Force $results -ErrorAction Ignore
    & dotnet test (Join-Path $Root 'tests/DeltaMigrate.Engine.Tests') -c $Configuration --nologo `
        --logger 'console;verbosity=normal' --logger 'trx' --results-directory $results
    $xunitExit = $LASTEXITCODE
    $xunit = Get-TrxCounts $results

    $installHome = Install-TestPackage
    $modules = Join-Path $installHome '.local/share/powershell/Modules'
    Write-Step 'Pester (the installed module, against real QEMU) in a fresh pwsh'
    $pesterXml = Join-Path $results 'pester.xml'
    # DELTAMIGRATE_TEST_MODULE: the test files import this name (by hand, without it, the repository's manifest).
    $script = @"
`$ErrorActionPreference = 'Stop'
`$env:PSModulePath = '$modules' + [IO.Path]::PathSeparator + `$env:PSModulePath
`$env:DELTAMIGRATE_TEST_MODULE = 'DeltaMigrate'
Import-Module '$PesterManifest'
`$config = New-PesterConfiguration
`$config.Run.Path = Get-ChildItem '$Root/tests/pester' -Filter '$PesterFilter.Tests.ps1' | ForEach-Object FullName
`$config.Run.PassThru = `$true
`$config.Output.Verbosity = 'Detailed'
`$config.TestResult.Enabled = `$true
`$config.TestResult.OutputPath = '$pesterXml'
`$r = Invoke-Pester -Configuration `$config
"PESTER `$(`$r.PassedCount) `$(`$r.FailedCount + `$r.FailedBlocksCount + `$r.FailedContainersCount) `$(`$r.SkippedCount)"
"@
    & dotnet pwsh -NoProfile -NonInteractive -Command $script | Tee-Object -Variable lines | Out-Host
    Remove-Item -Recurse -Force $installHome -ErrorAction Ignore
    $summary = $lines | Where-Object { $_ -match '^PESTER (\d+) (\d+) (\d+)$' } | Select-Object -Last 1
    if (-not $summary) { throw 'Pester did not report a result.' }
    $null = $summary -match '^PESTER (\d+) (\d+) (\d+)$'
    $pester = [pscustomobject]@{ Passed = [int]$Matches[1]; Failed = [int]$Matches[2]; Skipped = [int]$Matches[3] }

    Write-Step 'Summary'
    Write-Host "xUnit:  $($xunit.Passed) passed, $($xunit.Failed) failed, $($xunit.Skipped) skipped"
    Write-Host "Pester: $($pester.Passed) passed, $($pester.Failed) failed, $($pester.Skipped) skipped"
    $failed = $xunit.Failed + $pester.Failed
    Write-Host "$($xunit.Passed + $pester.Passed) passed, $failed failed, $($xunit.Skipped + $pester.Skipped) skipped"
    if ($failed -gt 0 -or $xunitExit -ne 0 -or ($xunit.Passed + $pester.Passed) -eq 0) { exit 1 }
}

function Invoke-Demo {
    Invoke-Build
    Write-Step 'Demo: two local VMs, a live migration while the guest dirties memory'
    Invoke-Native dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'examples/Demo.ps1')
}

function Invoke-Bench {
    Invoke-Build
    Write-Step 'Benchmark: real migrations over tc-shaped links (tests/bench, results in tests/bench/results)'
    $script = Join-Path $Root 'tests/bench/Invoke-MigrationBenchmark.ps1'
    if ($Quick) { Invoke-Native dotnet pwsh -NoProfile -NonInteractive -File $script -Quick }
    else { Invoke-Native dotnet pwsh -NoProfile -NonInteractive -File $script -Cell ($BenchCell -join ',') }
}

switch ($Task) {
    'deps' { Invoke-Deps }
    'build' { Invoke-Build }
    'package' { Invoke-Package }
    'test' { Invoke-Test }
    'demo' { Invoke-Demo }
    'bench' { Invoke-Bench }
    'clean' {
        Remove-Item -Recurse -Force (Join-Path $Root 'module/bin'), (Join-Path $Root 'artifacts'), (Join-Path $Root 'out') -ErrorAction Ignore
        Get-ChildItem $Root -Include bin, obj -Recurse -Directory | Remove-Item -Recurse -Force
    }
}
