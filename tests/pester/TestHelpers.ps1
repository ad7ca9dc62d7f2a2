# Shared by the Pester files (dot-source first, then Import-Module $ModuleUnderTest): the module, a private run directory, the test guest,
# and helpers that wait on observable conditions (never on the clock alone).

$script:Root = Resolve-Path "$PSScriptRoot/../.."
# What the tests import: the installed package by name when build.ps1 test runs them
# (DELTAMIGRATE_TEST_MODULE), else, by hand, the repository's manifest.
$script:ModuleUnderTest = if ($env:DELTAMIGRATE_TEST_MODULE) { $env:DELTAMIGRATE_TEST_MODULE } else { Join-Path $Root 'DeltaMigrate.psd1' }
$script:Guest = Join-Path $Root 'tests/guest/out/guest.elf'
$script:Qemu10 = Join-Path $Root '.tools/qemu10/usr/bin/qemu-system-x86_64'
# One machine type on both ends, so QEMU 7.2 and 10.0 can migrate between each other.
$script:Machine = 'pc-i440fx-7.2'

function Initialize-TestRunDirectory {
    $dir = Join-Path ([IO.Path]::GetTempPath()) "dm-pester-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
    # 0700: the module refuses a run directory other users can reach into (RunDirectoryInsecure).
    $null = [IO.Directory]::CreateDirectory($dir, [IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
    $env:DELTAMIGRATE_RUNDIR = $dir
    $dir
}

function Remove-TestRunDirectory([string] $Directory) {
    Get-KvmVM -ErrorAction Ignore | Stop-KvmVM -Force -Confirm:$false -ErrorAction Ignore
    Remove-Item -Recurse -Force $Directory -ErrorAction Ignore
}

function Wait-Until {
    # Polls a condition until it holds or the deadline passes; throws with what it waited for.
    param([scriptblock] $Condition, [string] $What, [int] $TimeoutSeconds = 60)
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while (-not (& $Condition)) {
        if ([DateTime]::UtcNow -gt $deadline) { throw "Timed out after $TimeoutSeconds s waiting for $What" }
        Start-Sleep -Milliseconds 100
    }
}

function Get-Heartbeat([string] $SerialLog) {
    # The last heartbeat counter the guest printed, or -1.
    if (-not (Test-Path $SerialLog)) { return -1 }
    $last = Select-String -Path $SerialLog -Pattern '^DMGUEST hb (\d+)' | Select-Object -Last 1
    if ($last) { [long]$last.Matches[0].Groups[1].Value } else { -1 }
}

function Start-TestSource {
    # A VM running the test guest, returned once the guest has filled its working set and dirties memory.
    param([string] $Name, [string] $Append = 'ws=32 hot=8 rate=2000 bytes=16 pattern=scatter fill=random', [string] $QemuPath)
    $extra = @{}
    if ($QemuPath) { $extra.QemuPath = $QemuPath }
    $vm = Start-KvmVM -Name $Name -Memory 128MB -Kernel $Guest -Append $Append -Accelerator Tcg -Machine $Machine @extra
    Wait-Until { Select-String -Path $vm.SerialLog -Pattern '^DMGUEST ready' -Quiet } "guest '$Name' to fill its working set"
    $start = Get-Heartbeat $vm.SerialLog
    Wait-Until { (Get-Heartbeat $vm.SerialLog) -gt $start } "guest '$Name' heartbeat"
    $vm
}

function Start-TestDestination {
    # A VM waiting for the source's migration: same memory, machine, kernel and command line.
    param([string] $Name, [switch] $Paused, [string] $QemuPath, [string] $Append = 'ws=32')
    $extra = @{}
    if ($QemuPath) { $extra.QemuPath = $QemuPath }
    Start-KvmVM -Name $Name -Memory 128MB -Kernel $Guest -Append $Append -Accelerator Tcg -Machine $Machine -Incoming -Paused:$Paused @extra
}

function Save-GuestMemory([string] $Name, [string] $File) {
    Invoke-KvmQmp -Name $Name -Command pmemsave -Arguments @{ val = 0; size = 128MB; filename = $File } -Confirm:$false | Out-Null
    Wait-Until { (Test-Path $File) -and (Get-Item $File).Length -eq 128MB } "pmemsave of '$Name'"
}

function Assert-SameMemory([string] $Source, [string] $Destination) {
    $dir = $env:DELTAMIGRATE_RUNDIR
    $a = Join-Path $dir "$Source.mem"; $b = Join-Path $dir "$Destination.mem"
    Save-GuestMemory $Source $a
    Save-GuestMemory $Destination $b
    try {
        (Get-FileHash $a -Algorithm SHA256).Hash | Should -Be (Get-FileHash $b -Algorithm SHA256).Hash -Because "RAM of '$Source' and '$Destination' must be identical byte for byte"
    }
    finally { Remove-Item $a, $b -ErrorAction Ignore }
}
