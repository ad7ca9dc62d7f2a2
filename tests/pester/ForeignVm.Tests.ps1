# VMs the module did not start: QEMUs started by hand with one -qmp socket (no second monitor, no
# -S, none of our files), as the source and the destination, on one host and to another.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    . "$PSScriptRoot/TestHosts.ps1"
    $script:RunDir = Initialize-TestRunDirectory
    $script:Hand = Join-Path ([IO.Path]::GetTempPath()) "dm-hand-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
    $null = New-Item -ItemType Directory $Hand
    $script:H = New-TestHost -Name fv -LinkRate 1gbit
    $script:S = New-TestHostSession -TestHost $H
    Invoke-Command -Session $S { Import-Module $using:ModuleUnderTest }

    function Start-HandQemu([string] $Name, [switch] $Incoming) {
        # As an admin or a script would: its own folder, one monitor, daemonized with a pid file.
        $socket = Join-Path $Hand "$Name.qmp"; $serial = Join-Path $Hand "$Name.serial"
        $arguments = @('-name', $Name, '-machine', $Machine, '-accel', 'tcg', '-m', '128M', '-nodefaults', '-no-user-config',
            '-display', 'none', '-kernel', $Guest, '-append', 'ws=32 hot=8 rate=2000 bytes=16 pattern=scatter fill=random',
            '-qmp', "unix:$socket,server=on,wait=off", '-serial', "file:$serial", '-pidfile', (Join-Path $Hand "$Name.pid"), '-daemonize')
        if ($Incoming) { $arguments += '-incoming', 'defer' }
        & qemu-system-x86_64 @arguments
        if ($LASTEXITCODE -ne 0) { throw "QEMU '$Name' did not start." }
        if (-not $Incoming) {
            Wait-Until { Select-String -Path $serial -Pattern '^DMGUEST ready' -Quiet } "hand-started guest '$Name' to fill its working set"
        }
        [pscustomobject]@{ Name = $Name; Socket = $socket; SerialLog = $serial; Pid = [int](Get-Content (Join-Path $Hand "$Name.pid")) }
    }

    function Save-HandMemory([string] $Socket, [string] $File) {
        $vm = Get-KvmVM -QmpSocket $Socket
        Invoke-KvmQmp -VM $vm -Command pmemsave -Arguments @{ val = 0; size = 128MB; filename = $File } -Confirm:$false | Out-Null
        Wait-Until { (Test-Path $File) -and (Get-Item $File).Length -eq 128MB } "pmemsave of '$Socket'"
    }

    function Get-OurFiles { @(Get-ChildItem $Hand | Where-Object Extension -NotIn '.qmp', '.serial', '.pid') }
}

AfterAll {
    foreach ($qemu in @(Get-ChildItem $Hand -Filter *.pid -ErrorAction Ignore | Get-Content)) { Stop-Process -Id $qemu -Force -ErrorAction Ignore }
    Remove-Item -Recurse -Force $Hand -ErrorAction Ignore
    if ($H) { Remove-TestHost $H }
    Remove-TestRunDirectory $RunDir
}

Describe 'A QEMU started by hand with one QMP socket' {
    It 'is described by Get-KvmVM -QmpSocket, which lets go of its only monitor' {
        $vm = Start-HandQemu -Name hand-look
        $info = Get-KvmVM -QmpSocket $vm.Socket
        $info.Foreign | Should -BeTrue
        $info.Name | Should -Be 'hand-look'
        $info.State | Should -Be 'running'
        $info.Pid | Should -Be $vm.Pid
        $info.MemoryBytes | Should -Be 128MB
        (Get-KvmVM -QmpSocket $vm.Socket).State | Should -Be 'running' -Because 'a second client gets the monitor only if the first let go'
        Get-KvmVM | Where-Object Name -EQ 'hand-look' | Should -BeNullOrEmpty -Because 'a foreign VM is never written into our run directory'
    }

    It 'moves from Get-KvmVM -QmpSocket with deltas: RAM identical, nothing of ours beside its socket' {
        $vm = Start-HandQemu -Name hand-src
        $null = Start-TestDestination -Name hand-src-dst -Paused
        $result = Get-KvmVM -QmpSocket $vm.Socket | Move-KvmVM -Destination hand-src-dst -Compress Delta -Bandwidth 20MB -KeepSource -PassThru
        $result.Status | Should -Be 'Completed'
        $result.Compression.CacheHits | Should -BeGreaterThan 0 -Because 'pages sent again travelled as XBZRLE deltas'
        Get-OurFiles | Should -BeNullOrEmpty -Because 'the tunnel socket lives in our run directory'
        (Get-KvmVM -QmpSocket $vm.Socket).State | Should -Be 'postmigrate'

        $a = Join-Path $RunDir 'hand.mem'; $b = Join-Path $RunDir 'hand-dst.mem'
        Save-HandMemory $vm.Socket $a
        Save-GuestMemory hand-src-dst $b
        (Get-FileHash $a).Hash | Should -Be (Get-FileHash $b).Hash
        Remove-Item $a, $b
        Stop-KvmVM hand-src-dst -Force
    }

    It 'receives a VM as -Destination (Get-KvmVM -QmpSocket): started without -S, it waits for the commit, then runs' {
        $null = Start-TestSource -Name to-hand
        $vm = Start-HandQemu -Name hand-dst -Incoming
        $result = Move-KvmVM to-hand -Destination (Get-KvmVM -QmpSocket $vm.Socket) -Bandwidth 20MB -PassThru
        $result.Status | Should -Be 'Completed'
        $result.DestinationState | Should -Be 'running'
        $result.SourceState | Should -Be 'exited'
        $beat = Get-Heartbeat $vm.SerialLog
        Wait-Until { (Get-Heartbeat $vm.SerialLog) -gt $beat } "the moved guest's heartbeat in the hand-started QEMU"
        Get-OurFiles | Should -BeNullOrEmpty
    }

    It 'moves to another host over -Session, where a matching VM is started from what its QEMU says' {
        $vm = Start-HandQemu -Name hand-away
        $result = Get-KvmVM -QmpSocket $vm.Socket | Move-KvmVM -Session $S -Bandwidth 20MB -PassThru
        $result.Status | Should -Be 'Completed'
        $result.SourceState | Should -Be 'exited'
        $remote = Invoke-Command -Session $S { Get-KvmVM hand-away } | Select-Object State, SerialLog, MemoryBytes
        $remote.State | Should -Be 'running'
        $remote.MemoryBytes | Should -Be 128MB
        $beat = Get-Heartbeat $remote.SerialLog
        Wait-Until { (Get-Heartbeat $remote.SerialLog) -gt $beat } "the moved guest's heartbeat on the other host"
        Invoke-Command -Session $S { Stop-KvmVM hand-away -Force }
    }

    It 'receives from another host with -DestinationQmpSocket (Receive-KvmVM -QmpSocket there)' {
        $null = Start-TestSource -Name to-hand-there
        $vm = Start-HandQemu -Name hand-there -Incoming
        $result = Move-KvmVM to-hand-there -Session $S -DestinationQmpSocket $vm.Socket -Compress Delta -Bandwidth 20MB -PassThru
        $result.Status | Should -Be 'Completed'
        $result.DestinationState | Should -Be 'running'
        $beat = Get-Heartbeat $vm.SerialLog
        Wait-Until { (Get-Heartbeat $vm.SerialLog) -gt $beat } "the moved guest's heartbeat in the hand-started QEMU"
        Invoke-Command -Session $S { Get-KvmVM } | Should -BeNullOrEmpty -Because 'no VM was started there'
    }
}
