# -Converge: a guest that rewrites whole pages faster than the link carries them never converges on its own.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    $script:RunDir = Initialize-TestRunDirectory
    # An 8 MiB hot set rewritten with random bytes at 4,000 pages/s (16 MB/s): twice what the 8 MB/s link
    # drains, whatever the compression. The guest does that on a few % of a TCG vCPU, so only a high throttle
    # bites; at QEMU's 99 % it catches up at most 100 ms of work per second it runs (400 pages/s).
    $script:Stalling = 'ws=32 hot=8 rate=4000 pattern=random fill=random'
    $script:Link = @{ Bandwidth = 8MB; MaxDowntime = 0.3 }

    function Get-HeartbeatRates([string] $SerialLog, [int] $Skip = 0) {
        # The achieved dirty rates (pages/s) the guest printed, after the first $Skip heartbeats.
        Select-String -Path $SerialLog -Pattern '^DMGUEST hb \d+ dirtied=\d+ rate=(\d+)' |
            Select-Object -Skip $Skip | ForEach-Object { [long]$_.Matches[0].Groups[1].Value }
    }
}

AfterAll {
    Remove-TestRunDirectory $RunDir
}

Describe 'Move-KvmVM -Converge' {
    It 'Never: a migration that cannot converge fails at -Timeout, unthrottled, with the source running' {
        $src = Start-TestSource -Name never-src -Append $Stalling
        $null = Start-TestDestination -Name never-dst
        $err = $null
        Move-KvmVM never-src -Destination never-dst -Converge Never -Timeout 15 @Link -ErrorAction SilentlyContinue -ErrorVariable err

        $err[0].FullyQualifiedErrorId | Should -Be 'MigrationTimedOut,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        $result = $err[0].TargetObject
        $result.Status | Should -Be 'Cancelled'
        $result.SourceState | Should -Be 'running'
        $result.Convergence.Policy | Should -Be 'Never'
        $result.Convergence.StallReason | Should -Not -Be 'None' -Because 'the detector still reports the stall it saw'
        $result.Convergence.ThrottleSteps | Should -BeNullOrEmpty
        $result.Convergence.GuestSlowdown | Should -Be 0
        (Get-KvmVM never-src).State | Should -Be 'running'
        $before = Get-Heartbeat $src.SerialLog
        Wait-Until { (Get-Heartbeat $src.SerialLog) -gt $before } 'the source guest to go on'
    }

    It 'Throttle (default) with -Compress <_>: the stall is throttled away, the migration completes and RAM is identical' -ForEach 'Delta', 'None' {
        $src = Start-TestSource -Name "thr-src-$_" -Append $Stalling
        $null = Start-TestDestination -Name "thr-dst-$_" -Paused
        # Let the guest show its unthrottled pace first.
        $start = Get-Heartbeat $src.SerialLog
        Wait-Until { (Get-Heartbeat $src.SerialLog) -ge $start + 10 } 'ten heartbeats before the migration'
        $skip = @(Get-HeartbeatRates $src.SerialLog).Count

        $result = Move-KvmVM $src.Name -Destination "thr-dst-$_" -Compress $_ -Timeout 180 -KeepSource -PassThru @Link

        $result.Status | Should -Be 'Completed'
        $result.Converged | Should -BeTrue -Because 'the throttle, not -Timeout, let it finish'
        $c = $result.Convergence
        $c.Policy | Should -Be 'Throttle'
        $c.StallReason | Should -Not -Be 'None'
        $c.StalledAtRound | Should -BeGreaterThan 1
        @($c.ThrottleSteps).Count | Should -BeGreaterThan 0
        $c.MaxThrottlePercent | Should -BeGreaterOrEqual 20
        $c.ThrottledTime | Should -BeGreaterThan ([TimeSpan]::Zero)
        $c.GuestSlowdown | Should -BeGreaterThan 0
        $c.ThrottleSteps[0].Since | Should -BeGreaterOrEqual $c.StalledAt -Because 'QEMU throttles only once the engine saw the stall'

        # The guest really slowed down: its own achieved rate fell well below its pace before the migration.
        $beforeRates = @(Get-HeartbeatRates $src.SerialLog | Select-Object -First $skip | Select-Object -Last 10 | Sort-Object)
        $duringRates = @(Get-HeartbeatRates $src.SerialLog -Skip $skip)
        $median = $beforeRates[[int]($beforeRates.Count / 2)]
        ($duringRates | Measure-Object -Minimum).Minimum | Should -BeLessThan ($median / 2)

        Assert-SameMemory $src.Name "thr-dst-$_"
    }
}
